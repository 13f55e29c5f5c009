"""A page cut short by the store's read cap links the next page from where the store stopped."""

from __future__ import annotations

from typing import Any

from docllm.adapters.aws.dynamodb import QueryPage
from docllm.dashboard.queries import _page


class _State:
    def __init__(self, rows: list[tuple[str, dict[str, Any]]], resume_after: str | None) -> None:
        self.rows, self.resume_after = rows, resume_after

    def query_page(self, pk: str, prefix: str = "", **kw: Any) -> list[tuple[str, dict[str, Any]]]:
        page = QueryPage(self.rows)
        page.resume_after = self.resume_after
        return page


class _Platform:
    def __init__(self, state: _State) -> None:
        self.state = state


def test_a_short_page_at_the_read_cap_links_the_next_page_from_where_the_store_stopped() -> None:
    page = _page(_Platform(_State([("doc#a", {})], resume_after="doc#q")), "docs", after=None, limit=20)  # type: ignore[arg-type]
    assert page.rows == [("doc#a", {})] and page.next_after == "doc#q"


def test_a_full_page_links_from_its_last_row_and_a_last_page_links_nothing() -> None:
    rows = [(f"doc#{i:02d}", {}) for i in range(21)]
    page = _page(_Platform(_State(rows, resume_after=None)), "docs", after=None, limit=20)  # type: ignore[arg-type]
    assert len(page.rows) == 20 and page.next_after == "doc#19"
    last = _page(_Platform(_State(rows[:3], resume_after=None)), "docs", after=None, limit=20)  # type: ignore[arg-type]
    assert last.next_after is None
