"""Build the realistic retrieval set ``bench/search/realset.jsonl`` from hand-written questions.

The questions (``bench/search/realset_questions.py``) were written by reading pages of
``../shared/corpus/awsdocs``, the way a user asks, never from headings alone. Rules:

1. **Read, then ask.** A page was read; a question was written that the page answers, in the
   asker's words. The passage that answers it is kept verbatim as *evidence* (checked here).
2. **Types** (``type`` field), each with its own rule:

   * ``paraphrase`` – the page's point in other words: at least one key word replaced by a word
     the page does not use ("disks" for volumes, "server" for instance, "labels" for tags);
   * ``yesno`` – a question answered by yes or no ("Can I…", "Does…", "Is…");
   * ``howto`` – "How do I…" / "How can I…", a task the page explains;
   * ``noheading`` – none of the question's content terms (analyzed, without question words) is a
     term of the page's title or headings; checked here;
   * ``twopage`` – two pages each answer one half; both are listed, with one evidence each;
   * ``not_covered`` – the guides do not answer it; ``expected_doc_keys`` is empty and the
     evidence lists phrases that were checked to occur in **no** page of the corpus.

3. **Relevant pages** are the pages listed by hand plus, for single-page types, every other page
   whose normalised text holds the same evidence passage verbatim (the guides repeat passages,
   e.g. the default-encryption notice), when the passage is a sentence of at least ``MIN_WORDS``
   words (a title also occurs as link text in the pages that link to it) and occurs in at most
   ``MAX_COPIES`` pages (more is boilerplate; then only the pages listed by hand count); the guides'
   ``index.md`` and ``DocumentHistory.md`` never count.
4. **Normalisation** before matching: HTML anchors, Markdown escapes, link targets, ``*`` and
   backticks removed, whitespace collapsed, lowercased.

The file lists, per line: ``id``, ``question``, ``type``, ``expected_doc_keys`` (``<service>/<file>``,
the keys ``docllm ingest <dir> --service <service>`` and ``bench.search`` give), ``evidence`` and
``service_hint``. Bias: written by one person who read the pages first, so the questions tend to
name the page's subject; the ``noheading`` and ``paraphrase`` types push against that.

Run: ``.venv/bin/python -m bench.search.make_realset`` (checks and writes, ~10 s) or ``--check``
(checks only; exit 1 on any problem).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bench.search.corpus import AWSDOCS, SERVICES, clean_heading, documents
from bench.search.realset_questions import QUESTIONS, Entry

OUT = Path(__file__).resolve().parent / "realset.jsonl"
TYPES = ("paraphrase", "yesno", "howto", "noheading", "twopage", "not_covered")
MAX_COPIES = 10
MIN_WORDS = 8
#: Pages that repeat every title as a link: holding a passage there is not answering.
_NOT_ANSWERS = ("/index.md", "/DocumentHistory.md")

_ANCHOR = re.compile(r"<a name=\"[^\"]*\"></a>")
_ESCAPE = re.compile(r"\\(?=[^\w\s])")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MARKS = re.compile(r"[*`]")
_SPACE = re.compile(r"\s+")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.MULTILINE)


def normalise(text: str) -> str:
    """Text as evidence is matched against it.

    Examples
    --------
    >>> normalise("Use **`s3:PutObject`** \\\\- see [this](x.md)")
    'use s3:putobject - see this'
    """
    text = _ANCHOR.sub("", text)
    text = _ESCAPE.sub("", text)
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _MARKS.sub("", text)
    return _SPACE.sub(" ", text).strip().lower()


def heading_terms(raw: str) -> set[str]:
    """Analyzed terms of a page's title and headings."""
    from docllm.search.analyzer import analyze

    return {t for h in _HEADING.findall(raw) for t in analyze(clean_heading(h))}


def content_terms(question: str) -> list[str]:
    """The question's terms without question words and 'aws'/'amazon' (the answers' coverage terms)."""
    from docllm.answers.retrieve import question_terms

    return question_terms(question)


def check(entries: list[Entry], root: Path = AWSDOCS) -> tuple[list[dict[str, object]], list[str]]:
    """Check every entry against the corpus; return the JSONL records and the problems found."""
    pages = {d.doc_key: d.path.read_text(encoding="utf-8", errors="replace") for d in documents(root, SERVICES)}
    norm = {k: normalise(v) for k, v in pages.items()}
    problems: list[str] = []
    records: list[dict[str, object]] = []
    seen: set[str] = set()
    for qid, qtype, question, listed, evidence in entries:
        if qid in seen:
            problems.append(f"{qid}: duplicate id")
        seen.add(qid)
        if qtype not in TYPES:
            problems.append(f"{qid}: unknown type {qtype!r}")
        expected: list[str] = []
        if qtype == "not_covered":
            if listed:
                problems.append(f"{qid}: a not_covered question lists pages")
            for phrase in evidence:
                holders = [k for k, t in norm.items() if normalise(phrase) in t]
                if holders:
                    problems.append(f"{qid}: {phrase!r} occurs in {holders[:3]}")
        else:
            if len(evidence) != len(listed) or not listed:
                problems.append(f"{qid}: needs one evidence passage per listed page")
            if qtype == "twopage" and len(listed) != 2:
                problems.append(f"{qid}: a twopage question lists two pages")
            for key, passage in zip(listed, evidence, strict=False):
                if key not in norm:
                    problems.append(f"{qid}: no page {key}")
                    continue
                wanted = normalise(passage)
                if wanted not in norm[key]:
                    problems.append(f"{qid}: evidence not in {key}: {passage!r}")
                    continue
                expected.append(key)
                if qtype != "twopage" and len(wanted.split()) >= MIN_WORDS:
                    holders = [k for k, t in norm.items() if wanted in t and not k.endswith(_NOT_ANSWERS)]
                    if len(holders) <= MAX_COPIES:
                        expected.extend(holders)
            if qtype == "noheading":
                for key in listed:
                    if key in pages:
                        clash = set(content_terms(question)) & heading_terms(pages[key])
                        if clash:
                            problems.append(f"{qid}: heading terms {sorted(clash)} of {key} in the question")
        expected = list(dict.fromkeys(expected))
        records.append(
            {
                "id": qid,
                "question": question,
                "type": qtype,
                "expected_doc_keys": expected,
                "evidence": evidence,
                "service_hint": listed[0].split("/", 1)[0] if listed else None,
            }
        )
    return records, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="check only, write nothing")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not AWSDOCS.is_dir():
        print(f"skipped: {AWSDOCS} is not present", file=sys.stderr)
        return 0
    records, problems = check(QUESTIONS)
    for p in problems:
        print(p, file=sys.stderr)
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r["type"])] = counts.get(str(r["type"]), 0) + 1
    print(f"{len(records)} questions: {counts}; {len(problems)} problems", file=sys.stderr)
    if problems:
        return 1
    if not args.check:
        with args.out.open("w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
