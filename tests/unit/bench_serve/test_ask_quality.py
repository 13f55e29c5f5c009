"""bench.serve's answer-quality scoring: the dev set and the held-out questions, without a platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.serve.ask import REALSET, Item, load_devset, load_heldout, quality, write_answers


def _answer(
    *cited: str, abstained: bool = False, text: str = "Choose Enable.", reason: str = "no_relevant_documents",
    offered: tuple[str, ...] = (),
) -> dict[str, Any]:  # fmt: skip
    """A ``/v1/ask`` response as JSON; ``offered``: pages retrieved above the floor, not cited."""
    citations = [
        {"doc_key": k, "version_id": None, "chunk_id": f"{k}#0", "title": k, "heading_path": [], "score": 1.0,
         "quote": text, "sentences": [0]}
        for k in cited
    ]  # fmt: skip
    pages = [*cited, *offered]
    return {
        "question": "q", "answer": "The documentation does not cover this." if abstained else text,
        "citations": [] if abstained else citations, "grounded": True, "unsupported": [],
        "abstained": abstained, "reason": reason if abstained else None, "model_version": "m", "latency_ms": 1.0,
        "retrieval": [
            {"doc_key": k, "version_id": None, "title": k, "score": 1.0, "coverage": 1.0, "chunk_ids": [f"{k}#0"]}
            for k in pages
        ],
    }  # fmt: skip


def test_held_out_questions_are_the_realistic_sets_s3_and_uncovered_ones_with_no_reference_answer() -> None:
    items = load_heldout()
    assert REALSET.exists()
    covered = [it for it in items if it.covered]
    uncovered = [it for it in items if not it.covered]
    assert len(covered) >= 30 and len(uncovered) >= 20
    assert all(it.answer is None for it in items)
    assert all(any(p.startswith("s3/") for p in it.pages) for it in covered)  # answerable from the S3 guide
    # Nothing of the dev set the answer path was tuned on is among them.
    assert not {it.question for it in items} & {it.question for it in load_devset()}


def test_a_question_with_pages_counts_as_answerable_even_without_a_reference_answer() -> None:
    items = [
        Item(id="h1", question="q1", answer=None, pages=["s3/a.md"]),
        Item(id="h2", question="q2", answer=None, pages=["s3/b.md"]),
        Item(id="n1", question="q3", answer=None, pages=[]),
    ]
    answers = {"h1": _answer("s3/a.md"), "h2": _answer("s3/c.md"), "n1": _answer(abstained=True)}
    q = quality(items, answers)
    assert (q["answerable"], q["not_covered"]) == (2, 1)
    assert q["citation_hit_rate"] == 0.5
    assert q["correct_abstention_rate"] == 1.0
    assert q["answer_token_f1"] is None  # no reference answers: F1 is not made up


def test_the_dev_sets_f1_is_averaged_over_its_answerable_questions() -> None:
    items = [
        Item(id="a1", question="q", answer="Choose Enable.", pages=["s3/a.md"]),
        Item(id="a2", question="q", answer="Something else entirely.", pages=["s3/a.md"]),
    ]
    q = quality(items, {"a1": _answer("s3/a.md"), "a2": _answer("s3/a.md")})
    assert q["answer_token_f1"] == 0.5


def test_answers_by_question_say_whether_an_answering_page_was_cited(tmp_path: Path) -> None:
    items = [
        Item(id="h1", question="q1", answer=None, pages=["s3/a.md"]),
        Item(id="n1", question="q2", answer=None, pages=[]),
    ]
    out = tmp_path / "answers.jsonl"
    write_answers(out, {"heldout": (items, {"h1": _answer("s3/b.md", "s3/a.md"), "n1": _answer(abstained=True)})})
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["hit"], r["abstained"], r["cited"]) for r in rows] == [
        ("h1", True, False, ["s3/a.md", "s3/b.md"]),
        ("n1", False, True, []),
    ]


def test_an_abstention_naming_an_answering_page_to_read_is_counted_apart_from_hits() -> None:
    items = [
        Item(id="h1", question="q1", answer=None, pages=["s3/a.md"]),
        Item(id="h2", question="q2", answer=None, pages=["s3/b.md"]),
        Item(id="n1", question="q3", answer=None, pages=[]),
        Item(id="n2", question="q4", answer=None, pages=[]),
    ]
    answers = {
        "h1": _answer(abstained=True, reason="no_answer_in_context", offered=("s3/c.md", "s3/a.md")),
        "h2": _answer(abstained=True, reason="no_answer_in_context", offered=("s3/c.md",)),
        "n1": _answer(abstained=True, reason="no_answer_in_context", offered=("s3/c.md",)),
        "n2": _answer(abstained=True, offered=("s3/c.md",)),  # nothing relevant: nothing is pointed to
    }
    q = quality(items, answers)
    assert q["citation_hit_rate"] == 0.0
    assert q["abstained_pointing_to_an_answering_page"] == 0.5
    assert q["not_covered_pointed_to_pages"] == 0.5
