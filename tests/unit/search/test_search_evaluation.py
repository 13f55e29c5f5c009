from __future__ import annotations

from collections.abc import Sequence

import pytest

from docllm.ports.search import IndexedChunk, SearchHit, SearchIndex
from docllm.search.evaluation import evaluate, format_table, load_questions
from docllm.search.exceptions import DevsetFormatError


class Canned(SearchIndex):
    """Returns fixed doc keys per question: the metrics, not a ranking, are under test."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    def replace_document(self, doc_key: str, version: str, chunks: Sequence[IndexedChunk]) -> None: ...
    def delete_document(self, doc_key: str) -> None: ...
    def document_versions(self) -> dict[str, str]:
        return {}

    def services(self) -> set[str]:
        return set()

    def search(self, query: str, *, k: int = 10, service: str | None = None) -> list[SearchHit]:
        return [
            SearchHit(chunk_id=f"{d}#{i}", doc_key=d, service="s", title="", heading_path=[], text="", score=1.0)
            for i, d in enumerate(self.answers[query])
        ][:k]


def test_bad_line_is_reported_with_its_number() -> None:
    lines = ['{"question": "q", "expected_doc_keys": ["a"]}', "", '{"question": "q2"}']
    with pytest.raises(DevsetFormatError) as info:
        load_questions(lines)
    assert info.value.line_no == 3


def test_hits_are_reduced_to_documents_before_ranking() -> None:
    index = Canned({"q1": ["x", "x", "x", "a"], "q2": ["b", "y"], "q3": ["z"]})
    questions = load_questions(
        [
            '{"question": "q1", "expected_doc_keys": ["a"]}',
            '{"question": "q2", "expected_doc_keys": ["b"]}',
            '{"question": "q3", "expected_doc_keys": ["c"]}',
        ]
    )
    report = evaluate(index, questions)
    assert report.details[0].retrieved_doc_keys == ["x", "a"]
    assert report.details[0].first_relevant_rank == 2
    assert report.recall_at_1 == pytest.approx(1 / 3)
    assert report.recall_at_5 == pytest.approx(2 / 3)
    assert report.mrr_at_10 == pytest.approx((0.5 + 1.0) / 3)
    assert "recall@10" in format_table(report)
