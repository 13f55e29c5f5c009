"""The canary's question sets and scoring (docllm.monitoring.canary): pure, no platform."""

from __future__ import annotations

import json

import pytest

from docllm.dataset.versions import SplitRecord
from docllm.monitoring.canary import (
    MAX_ITEMS,
    NOT_COVERED_QUESTIONS,
    CanaryItem,
    CanarySetError,
    ItemResult,
    default_items,
    parse_canary_set,
    pick_documents,
    score,
    tally,
    tally_by_version,
)


def jsonl(*rows: object) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


ANSWER = {"question": "How do I enable versioning on a bucket?", "expect": "answer", "doc_keys": ["s3/Versioning.md"]}
ABSTAIN = {"question": "What is a good recipe for banana bread?", "expect": "abstain"}


# --------------------------------------------------------------------------- the operator's set


def test_an_operator_set_parses_with_stable_ids_and_optional_fields() -> None:
    items = parse_canary_set(jsonl(ANSWER, {**ABSTAIN, "id": "bread", "service": "s3"}) + b"\n\n")
    assert [(i.expect, i.doc_keys, i.service) for i in items] == [
        ("answer", ["s3/Versioning.md"], None),
        ("abstain", [], "s3"),
    ]
    assert items[1].id == "bread"
    assert items[0].id == parse_canary_set(jsonl(ANSWER))[0].id != ""


@pytest.mark.parametrize(
    ("rows", "line", "says"),
    [
        ([ANSWER, "{not json"], 2, "not JSON"),
        ([ANSWER, [1, 2]], 2, "not an object"),
        ([{**ANSWER, "doc_keys": []}], 1, "needs doc_keys"),
        ([{**ABSTAIN, "doc_keys": ["s3/a.md"]}], 1, "takes no doc_keys"),
        ([{**ABSTAIN, "expect": "maybe"}], 1, "expect"),
        ([{**ABSTAIN, "answer": "no"}], 1, "answer"),
        ([{**ABSTAIN, "question": "two\nlines"}], 1, "control characters"),
        ([{**ABSTAIN, "question": "x" * 2001}], 1, "question"),
        ([ABSTAIN, {**ABSTAIN}], 2, "repeats line 1"),
    ],
)
def test_an_invalid_line_is_refused_with_its_number(rows: list[object], line: int, says: str) -> None:
    data = b"\n".join(r.encode() if isinstance(r, str) else json.dumps(r).encode() for r in rows)
    with pytest.raises(CanarySetError) as e:
        parse_canary_set(data)
    assert e.value.line == line
    assert f"benchmarks/canary.jsonl:{line}:" in str(e.value) and says in str(e.value)


def test_an_empty_or_oversized_or_undecodable_set_is_refused() -> None:
    with pytest.raises(CanarySetError, match="no questions"):
        parse_canary_set(b"\n  \n")
    with pytest.raises(CanarySetError, match="not UTF-8"):
        parse_canary_set(b"\xff\xfe{")
    many = [{"question": f"What is a recipe for cake number {i}?", "expect": "abstain"} for i in range(MAX_ITEMS + 1)]
    with pytest.raises(CanarySetError, match=f"more than {MAX_ITEMS}"):
        parse_canary_set(jsonl(*many))


# --------------------------------------------------------------------------- the default set

PAGE = """# Versioning
A bucket is a container for objects stored in Amazon S3.

## Enabling versioning
Versioning keeps multiple variants of an object in the same bucket.

To enable versioning on a bucket, open the console and choose Properties.

You can create up to 100 buckets in each of your AWS accounts.
"""


def records(*keys: str) -> list[SplitRecord]:
    return [SplitRecord(chunk_id=f"{k}#0", doc_key=k, text=PAGE) for k in keys]


def test_the_default_set_asks_about_held_out_pages_and_ends_with_not_covered_questions() -> None:
    items = default_items(records("s3/a.md", "s3/b.md"), max_per_document=3)
    answerable = [i for i in items if i.expect == "answer"]
    assert len(answerable) == 6
    assert {tuple(i.doc_keys) for i in answerable} == {("s3/a.md",), ("s3/b.md",)}
    assert all(i.question.endswith("?") and i.rule for i in answerable)
    assert [i.question for i in items[len(answerable) :]] == list(NOT_COVERED_QUESTIONS)
    assert all(i.expect == "abstain" and i.rule == "not_covered" for i in items[len(answerable) :])


def test_the_default_set_is_deterministic_and_capped_per_document_and_overall() -> None:
    keys = [f"s3/p{i}.md" for i in range(10)]
    items = default_items(records(*keys), max_answerable=7, max_per_document=1, not_covered=[])
    assert items == default_items(records(*keys), max_answerable=7, max_per_document=1, not_covered=[])
    assert len(items) == 7
    assert len({i.doc_keys[0] for i in items}) == 7  # one per document


def test_the_default_set_leaves_out_pages_the_index_does_not_hold() -> None:
    items = default_items(records("s3/a.md", "s3/gone.md"), indexed={"s3/a.md"}, not_covered=[])
    assert items and {i.doc_keys[0] for i in items} == {"s3/a.md"}
    assert pick_documents(["s3/a.md", "s3/gone.md"], indexed={"s3/a.md"}, limit=10) == ["s3/a.md"]
    assert len(pick_documents([f"d{i}" for i in range(50)], indexed=None, limit=5)) == 5


def test_no_held_out_page_leaves_only_the_not_covered_questions() -> None:
    assert [i.expect for i in default_items([])] == ["abstain"] * len(NOT_COVERED_QUESTIONS)


# --------------------------------------------------------------------------- scoring

COVERED = CanaryItem(question="How do I enable versioning?", expect="answer", doc_keys=["s3/V.md", "s3/W.md"])
UNCOVERED = CanaryItem(question="What is a good recipe for banana bread?", expect="abstain")


@pytest.mark.parametrize(
    ("item", "abstained", "cited", "error", "correct"),
    [
        (COVERED, False, ["s3/other.md", "s3/W.md"], None, True),
        (COVERED, False, ["s3/other.md"], None, False),
        (COVERED, True, [], None, False),
        (UNCOVERED, True, [], None, True),
        (UNCOVERED, False, ["s3/V.md"], None, False),
        (COVERED, None, [], "EngineUnavailableError: down", False),
        (UNCOVERED, None, [], "EngineUnavailableError: down", False),
    ],
)
def test_an_item_is_right_when_it_cites_an_expected_page_or_abstains_as_expected(
    item: CanaryItem, abstained: bool | None, cited: list[str], error: str | None, correct: bool
) -> None:
    result = score(item, abstained=abstained, cited=cited, model_version=None if error else "v1", error=error)
    assert result.correct is correct
    assert result.error == error and (result.abstained is None) == (error is not None)


def result(correct: bool, version: str | None, error: str | None = None) -> ItemResult:
    return ItemResult(
        id="x", question="q", expect="abstain", correct=correct, abstained=None if error else True,
        model_version=version, error=error,
    )  # fmt: skip


def test_accuracy_is_a_percentage_and_missing_when_nothing_was_asked() -> None:
    t = tally([result(True, "v1"), result(False, "v1"), result(False, None, "E: x")])
    assert (t.questions, t.correct, t.errors, t.accuracy) == (3, 1, 1, pytest.approx(33.333, abs=1e-3))
    assert tally([]).accuracy is None


def test_a_failed_request_counts_against_the_sole_version_but_not_under_a_split() -> None:
    results = [result(True, "v1"), result(True, "v2"), result(False, None, "E: x")]
    sole = tally_by_version(results, sole_version="v1")
    assert {v: (t.questions, t.correct) for v, t in sole.items()} == {"v1": (2, 1), "v2": (1, 1)}
    split = tally_by_version(results, sole_version=None)
    assert {v: (t.questions, t.correct) for v, t in split.items()} == {"v1": (1, 1), "v2": (1, 1)}
