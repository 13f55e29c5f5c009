"""StateStore contract: SQLite behaves as the DynamoDB table does (moto stands in for DynamoDB)."""

from __future__ import annotations

from typing import Any

import pytest

from docllm.exceptions import ConflictError
from docllm.ports.state import StateStore


def test_put_then_get_returns_an_equal_json_item(state_store: StateStore) -> None:
    item: dict[str, Any] = {
        "status": "processed",
        "count": 3,
        "score": 0.75,
        "whole": 2.0,
        "ok": True,
        "none": None,
        "list": [1, "two", {"three": 3.5}],
        "nested": {"a": {"b": "c"}},
    }
    state_store.put("docs", "s3/a.md", item)
    assert state_store.get("docs", "s3/a.md") == item  # 2.0 may come back as 2: equal in JSON and Python


def test_get_of_an_absent_item_is_none(state_store: StateStore) -> None:
    assert state_store.get("docs", "absent") is None


def test_put_replaces_the_item(state_store: StateStore) -> None:
    state_store.put("p", "s", {"a": 1, "b": 2})
    state_store.put("p", "s", {"a": 3})
    assert state_store.get("p", "s") == {"a": 3}


def test_put_if_absent_raises_conflict_and_keeps_the_first_item(state_store: StateStore) -> None:
    state_store.put("jobs", "train-1", {"status": "InProgress"}, if_absent=True)
    with pytest.raises(ConflictError):
        state_store.put("jobs", "train-1", {"status": "Completed"}, if_absent=True)
    assert state_store.get("jobs", "train-1") == {"status": "InProgress"}


def test_if_absent_is_per_sort_key(state_store: StateStore) -> None:
    state_store.put("jobs", "a", {"n": 1}, if_absent=True)
    state_store.put("jobs", "b", {"n": 2}, if_absent=True)
    assert [sk for sk, _ in state_store.query("jobs")] == ["a", "b"]


def test_delete_is_idempotent(state_store: StateStore) -> None:
    state_store.put("p", "s", {"a": 1})
    state_store.delete("p", "s")
    state_store.delete("p", "s")
    assert state_store.get("p", "s") is None
    state_store.put("p", "s", {"a": 2}, if_absent=True)  # a deleted item no longer conflicts


def test_query_orders_by_sort_key_bytes_and_filters_by_prefix(state_store: StateStore) -> None:
    for sk in ["v10", "v2", "v1", "w1", "V9", "v1#a"]:
        state_store.put("datasets", sk, {"name": sk})
    state_store.put("other", "v0", {"name": "elsewhere"})
    assert [sk for sk, _ in state_store.query("datasets")] == ["V9", "v1", "v1#a", "v10", "v2", "w1"]
    assert [sk for sk, _ in state_store.query("datasets", "v1")] == ["v1", "v1#a", "v10"]
    assert dict(state_store.query("datasets", "w")) == {"w1": {"name": "w1"}}
    assert list(state_store.query("datasets", "zzz")) == []
    assert list(state_store.query("nobody")) == []


def test_transact_applies_puts_and_deletes_together(state_store: StateStore) -> None:
    from docllm.ports.state import Delete, Put

    state_store.put("docs", "old", {"a": 1})
    state_store.transact([Put("docs", "new", {"b": 2}), Delete("docs", "old"), Put("outbox", "1", {"e": "x"})])
    assert state_store.get("docs", "old") is None
    assert state_store.get("docs", "new") == {"b": 2}
    assert state_store.get("outbox", "1") == {"e": "x"}


def test_transact_with_a_failed_if_absent_writes_nothing(state_store: StateStore) -> None:
    from docllm.ports.state import Delete, Put

    state_store.put("jobs", "j", {"status": "InProgress"})
    state_store.put("docs", "d", {"v": 1})
    with pytest.raises(ConflictError):
        state_store.transact(
            [Put("docs", "d", {"v": 2}), Delete("docs", "x"), Put("jobs", "j", {"status": "new"}, if_absent=True)]
        )
    assert state_store.get("docs", "d") == {"v": 1}
    assert state_store.get("jobs", "j") == {"status": "InProgress"}


def test_transact_refuses_two_writes_of_one_key_and_over_the_item_limit(state_store: StateStore) -> None:
    from docllm.ports.state import MAX_TRANSACT_ITEMS, Put

    with pytest.raises(ValueError, match="once"):
        state_store.transact([Put("p", "s", {"a": 1}), Put("p", "s", {"a": 2})])
    with pytest.raises(ValueError, match="at most"):
        state_store.transact([Put("p", str(i), {}) for i in range(MAX_TRANSACT_ITEMS + 1)])
    assert state_store.get("p", "s") is None
