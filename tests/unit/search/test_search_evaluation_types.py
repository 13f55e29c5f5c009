"""Per-type evaluation: not_covered questions are left out of recall and scored on abstention."""

from __future__ import annotations

import pytest

from docllm.search.evaluation import evaluate, format_table, load_questions
from docllm.search.exceptions import DevsetFormatError
from tests.unit.search.test_search_evaluation import Canned

LINES = [
    '{"id": "a", "type": "yesno", "question": "q1", "expected_doc_keys": ["a"]}',
    '{"id": "b", "type": "twopage", "question": "q2", "expected_doc_keys": ["b", "c"]}',
    '{"id": "c", "type": "twopage", "question": "q3", "expected_doc_keys": ["d", "e"]}',
    '{"id": "n", "type": "not_covered", "question": "q4", "expected_doc_keys": []}',
]


def test_only_a_not_covered_question_may_expect_no_document():
    with pytest.raises(DevsetFormatError):
        load_questions(['{"question": "q", "expected_doc_keys": []}'])
    with pytest.raises(DevsetFormatError):
        load_questions(['{"question": "q", "type": "not_covered", "expected_doc_keys": ["a"]}'])


def test_not_covered_questions_are_counted_apart_and_types_reported():
    index = Canned({"q1": ["a"], "q2": ["x", "c", "b"], "q3": ["e"], "q4": ["z"]})
    report = evaluate(index, load_questions(LINES), abstains=lambda q: q.question in {"q3", "q4"})
    assert report.questions == 3 and report.not_covered_questions == 1
    assert report.recall_at_1 == pytest.approx(2 / 3)
    assert report.by_type["twopage"].all_at_10 == pytest.approx(0.5)
    assert report.by_type["twopage"].abstain_rate == pytest.approx(0.5)
    assert report.by_type["not_covered"].abstain_rate == 1.0
    assert report.by_type["not_covered"].recall_at_10 is None
    assert "not_covered" in format_table(report)


def test_k_cuts_the_distinct_pages_scored():
    index = Canned({"q1": ["x", "y", "a"], "q2": ["b"], "q3": ["d"], "q4": []})
    report = evaluate(index, load_questions(LINES), k=2)
    assert report.k == 2 and report.details[0].retrieved_doc_keys == ["x", "y"]
    assert report.recall_at_10 == pytest.approx(2 / 3)
