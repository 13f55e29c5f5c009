"""How the demo shows an answer: citations when it answers, the pages to read when it abstains over
relevant pages (search results, not citations), nothing more when nothing relevant was found."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from docllm.demo.steps import Context, _show_answer


def _abstention(reason: str) -> dict[str, Any]:
    page = {"doc_key": "quillstore/sync.md", "version_id": None, "title": "Sync", "score": 4.0, "coverage": 1.0,
            "chunk_ids": ["quillstore/sync.md#0"]}  # fmt: skip
    return {
        "question": "q", "answer": "The documentation does not cover this.", "citations": [], "grounded": True,
        "unsupported": [], "abstained": True, "reason": reason, "model_version": "m", "latency_ms": 1.0,
        "retrieval": [page],
    }  # fmt: skip


def _shown(answer: dict[str, Any]) -> list[str]:
    said: list[str] = []
    _show_answer(cast(Context, SimpleNamespace(say=said.append)), "How does sync work?", answer)
    return said


def test_an_abstention_over_relevant_pages_names_them_as_search_results() -> None:
    said = _shown(_abstention("no_answer_in_context"))
    assert said[1] == "    A: (abstained: no_answer_in_context)"
    assert said[2].endswith("pages that may cover it (search results, not citations): quillstore/sync.md")


def test_an_abstention_with_nothing_relevant_names_no_page() -> None:
    assert len(_shown(_abstention("no_relevant_documents"))) == 2
