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


# -- pages and counts: the adapter, the port's default and a plain-Python reference agree ------------------

#: Sort keys that put the page ranges to work: ASCII neighbours, multi-byte UTF-8 (2, 3 and 4 bytes), the
#: last code point before the surrogates (U+D7FF, whose successor is U+E000) and U+FFFF (successor U+10000).
PAGED_KEYS = [
    "a", "a#1", "a#10", "a#2", "a/b", "ab", "b", "V9",
    "é", "é#1", "éa", "ê", "€", "€x", "日本", "日本語", "日", "\U0001f600", "\U0001f600x",
    "k\ud7ff", "k\ud7ffa", "k\ue000", "k\uffff", "k\uffffz", "k\U00010000",
]  # fmt: skip
PAGED_PREFIXES = ["", "a", "a#", "é", "日本", "\U0001f600", "k\ud7ff", "k\uffff", "zz"]


def _paged_item(i: int, sk: str) -> dict[str, Any]:
    item: dict[str, Any] = {"status": ["ok", "failed", "held"][i % 3], "n": i % 4, "name": sk}
    if i % 5 == 0:
        del item["status"]  # missing: reads as "None", and is counted as "None"
    return item


@pytest.fixture
def paged(state_store: StateStore) -> dict[str, dict[str, Any]]:
    data = {sk: _paged_item(i, sk) for i, sk in enumerate(PAGED_KEYS)}
    for sk, item in data.items():
        state_store.put("paged", sk, item)
    state_store.put("paged-other", "a", {"status": "ok"})
    return data


def _reference(
    data: dict[str, dict[str, Any]],
    prefix: str,
    after: str | None,
    limit: int,
    where: dict[str, str] | None,
    descending: bool,
) -> list[tuple[str, dict[str, Any]]]:
    keys = sorted((k for k in data if k.startswith(prefix)), reverse=descending)
    if after is not None:
        keys = [k for k in keys if (k < after if descending else k > after)]
    keys = [k for k in keys if all(str(data[k].get(f)) == v for f, v in (where or {}).items())]
    return [(k, data[k]) for k in keys[:limit]]


@pytest.mark.parametrize("where", [None, {"status": "ok"}, {"n": "3"}, {"status": "held", "n": "1"}])
@pytest.mark.parametrize("descending", [False, True])
def test_query_page_walks_every_prefix_page_by_page_like_the_default(
    state_store: StateStore, paged: dict[str, dict[str, Any]], where: dict[str, str] | None, descending: bool
) -> None:
    for prefix in PAGED_PREFIXES:
        for limit in (1, 3):
            after: str | None = None
            walked: list[str] = []
            while True:
                want = _reference(paged, prefix, after, limit, where, descending)
                got = state_store.query_page(
                    "paged", prefix, after=after, limit=limit, where=where, descending=descending
                )
                default = StateStore.query_page(
                    state_store, "paged", prefix, after=after, limit=limit, where=where, descending=descending
                )
                assert got == want, (prefix, after, limit)
                assert default == want, (prefix, after, limit)
                walked += [sk for sk, _ in got]
                if len(got) < limit:
                    break
                after = got[-1][0]
            assert walked == [sk for sk, _ in _reference(paged, prefix, None, 99, where, descending)]


@pytest.mark.parametrize("descending", [False, True])
def test_query_page_after_any_key_is_exclusive_and_stays_in_the_prefix(
    state_store: StateStore, paged: dict[str, dict[str, Any]], descending: bool
) -> None:
    # ``after`` anywhere: an existing key (excluded), between keys, before or beyond the prefix's keys.
    afters = [*PAGED_KEYS, "", "0", "a#", "a0", "aa", "c", "é0", "k", "k\ud7ff\U0010ffff", "\U0010ffff"]
    for prefix in PAGED_PREFIXES:
        for after in afters:
            want = _reference(paged, prefix, after, 4, None, descending)
            got = state_store.query_page("paged", prefix, after=after, limit=4, descending=descending)
            assert got == want, (prefix, after)
            assert (
                StateStore.query_page(state_store, "paged", prefix, after=after, limit=4, descending=descending) == want
            )


def test_query_page_of_an_empty_or_absent_range_is_empty(
    state_store: StateStore, paged: dict[str, dict[str, Any]]
) -> None:
    assert state_store.query_page("nobody") == []
    assert state_store.query_page("paged", "zz") == []
    assert state_store.query_page("paged", "a", after="b") == []
    assert state_store.query_page("paged", "a", after="a", descending=True) == []
    assert state_store.query_page("paged", where={"status": "nobody"}) == []
    assert state_store.query_page("paged", limit=0) == []


def test_count_by_counts_each_combination_as_text_like_the_default(
    state_store: StateStore, paged: dict[str, dict[str, Any]]
) -> None:
    want: dict[tuple[str, ...], int] = {}
    for item in paged.values():
        key = (str(item.get("status")), str(item.get("n")))
        want[key] = want.get(key, 0) + 1
    assert state_store.count_by("paged", ("status", "n")) == want
    assert StateStore.count_by(state_store, "paged", ("status", "n")) == want
    assert state_store.count_by("paged", ("absent",)) == {("None",): len(paged)}
    assert state_store.count_by("nobody", ("status",)) == {}
