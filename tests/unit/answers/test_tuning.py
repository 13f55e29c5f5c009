"""Answer-tuning examples: the rules, the serving layout, determinism, the caps, the distractors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from docllm.answers.tuning import AnswerTuning, TuningExample, build_examples, source_chunks
from docllm.dataset.versions import SplitRecord
from docllm.serving.chat import ANSWER_MARKER, CONTEXT_MARKER, QUESTION_MARKER

VERSIONING = """# Enabling versioning on buckets

You can use S3 Versioning to keep multiple versions of an object in one bucket.

A bucket is a container for objects stored in Amazon S3.

To suspend versioning, you set the status value to `Suspended`.

You can create up to 100 buckets in each of your AWS accounts.

**To enable versioning on an S3 bucket**

1. Sign in to the console.
1. Choose **Properties**.

The following example enables versioning on an S3 bucket.

```
aws s3api put-bucket-versioning --bucket amzn-s3-demo-bucket --versioning-configuration Status=Enabled
```"""

OTHER = [
    SplitRecord(chunk_id=f"o{i}", doc_key=f"s3/other{i}.md", text=f"# Other page {i}\n\nNothing to ask about here.")
    for i in range(6)
]


def _records() -> list[SplitRecord]:
    return [SplitRecord(chunk_id="v1", doc_key="s3/versioning.md", text=VERSIONING), *OTHER]


def _build(**settings: Any) -> dict[str, TuningExample]:
    examples = build_examples(_records, AnswerTuning(**settings), context_length=1024)
    return {e.question: e for e in examples}


def test_each_rule_asks_what_its_sentence_answers_and_answers_verbatim() -> None:
    by_question = _build(distractors=0)
    expected = {
        "How do I go about enabling versioning on buckets?": (
            "heading",
            "You can use S3 Versioning to keep multiple versions of an object in one bucket.",
        ),
        "What is a bucket?": ("definition", "A bucket is a container for objects stored in Amazon S3."),
        "How do I suspend versioning?": (
            "procedure",
            "To suspend versioning, you set the status value to `Suspended`.",
        ),
        "How do I enable versioning on an S3 bucket?": (
            "procedure",
            "1. Sign in to the console.\n1. Choose **Properties**.",
        ),
        "Which command enables versioning on an S3 bucket?": (
            "identifier",
            "aws s3api put-bucket-versioning --bucket amzn-s3-demo-bucket --versioning-configuration Status=Enabled",
        ),
        "To suspend versioning, you set the status value to what?": (
            "identifier",
            "To suspend versioning, you set the status value to `Suspended`.",
        ),
        "You can create up to how many buckets in each of your AWS accounts?": (
            "limit",
            "You can create up to 100 buckets in each of your AWS accounts.",
        ),
    }
    for question, (rule, answer) in expected.items():
        example = by_question[question]
        assert (example.rule, example.answer) == (rule, answer)
    assert by_question["To suspend versioning, you set the status value to what?"].expected == "Suspended"
    assert by_question["You can create up to how many buckets in each of your AWS accounts?"].expected == "100"


def test_example_is_the_serving_prompt_then_the_answer() -> None:
    for example in build_examples(_records, AnswerTuning(), context_length=1024):
        assert example.prompt.startswith(CONTEXT_MARKER + "\n[1] ")
        assert f"{QUESTION_MARKER}\n{example.question}\n\n{ANSWER_MARKER}\n" in example.prompt
        assert example.prompt.endswith(ANSWER_MARKER + "\n")
        assert example.text == example.prompt + example.answer
        # The answer can be copied: it is in the context.
        assert example.answer in example.prompt.split(QUESTION_MARKER)[0]


def test_passage_heading_is_rebuilt_as_ingestion_names_it() -> None:
    chunk = next(iter(source_chunks(_records())))
    assert chunk.heading_path == ("Amazon S3 User Guide", "Enabling versioning on buckets")
    example = build_examples(_records, AnswerTuning(distractors=0), context_length=1024)[0]
    assert example.prompt.startswith(f"{CONTEXT_MARKER}\n[1] Amazon S3 User Guide > Enabling versioning on buckets\n")


def test_headings_carry_over_to_the_next_chunks_of_a_document() -> None:
    records = [
        SplitRecord(chunk_id="a", doc_key="iam/p.md", text="# Page\n\n## Section\n\nText one."),
        SplitRecord(chunk_id="b", doc_key="iam/p.md", text="More text.\n\n### Sub\n\nText two."),
        SplitRecord(chunk_id="c", doc_key="x/q.md", text="No heading."),
    ]
    assert [c.heading_path for c in source_chunks(records)] == [
        ("IAM User Guide", "Page", "Section"),
        ("IAM User Guide", "Page", "Section"),
        (),
    ]


def test_same_split_gives_the_same_examples() -> None:
    a = build_examples(_records, AnswerTuning(), context_length=512)
    b = build_examples(_records, AnswerTuning(), context_length=512)
    assert [e.model_dump() for e in a] == [e.model_dump() for e in b]


def test_distractors_come_from_other_documents_only() -> None:
    examples = build_examples(_records, AnswerTuning(distractors=2), context_length=2048)
    with_distractors = [e for e in examples if e.distractors]
    assert with_distractors, "some examples should have distractors at this context length"
    doc_of = {r.chunk_id: r.doc_key for r in _records()}
    for e in examples:
        assert e.doc_key not in {doc_of[d] for d in e.distractors}
        assert e.chunk_id not in e.distractors


def test_caps_bound_the_examples() -> None:
    assert len(build_examples(_records, AnswerTuning(max_examples=3), context_length=1024)) == 3
    per_document = [e.doc_key for e in build_examples(_records, AnswerTuning(max_per_document=2), context_length=1024)]
    assert per_document.count("s3/versioning.md") == 2


def test_rules_can_be_chosen() -> None:
    examples = build_examples(_records, AnswerTuning(rules=("limit",)), context_length=1024)
    assert {e.rule for e in examples} == {"limit"}


def test_small_context_cuts_the_passage_but_keeps_the_answer() -> None:
    for example in build_examples(_records, AnswerTuning(), context_length=128):
        assert example.answer in example.prompt
        assert len(example.answer) <= 80  # a quarter of the context's estimated bytes


@pytest.mark.parametrize("bad", [{"share": 0}, {"share": 1.0}, {"distractors": 3}, {"rules": ()}, {"mix": 1}])
def test_invalid_setting_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AnswerTuning.model_validate(bad)


def test_tag_names_settings_and_context_length() -> None:
    assert AnswerTuning().tag(256) == AnswerTuning().tag(256)
    assert len({AnswerTuning().tag(256), AnswerTuning().tag(512), AnswerTuning(share=0.3).tag(256)}) == 3
