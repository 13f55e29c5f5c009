"""``docllm demo``: the whole lifecycle on a small corpus, as steps a re-run resumes (docs/demo.md).

:mod:`.corpus` finds the corpus's services and pages and splits them into the first upload and the
"new documents" added later; :mod:`.state` records the finished steps in the data directory;
:mod:`.steps` runs each step as requests to the platform (the CLI's own verbs), waiting on the
platform's events.
"""
