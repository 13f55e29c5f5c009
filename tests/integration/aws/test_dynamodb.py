"""DynamoStateStore on moto: JSON round trip, conditional writes, prefix queries, pages and counts."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from docllm.adapters.aws import dynamodb
from docllm.adapters.aws.dynamodb import DynamoStateStore, QueryPage, UnstorableItemError
from docllm.exceptions import ConflictError, TransientError
from docllm.ports.state import StateStore
from tests.support.aws import create_state_table

TABLE = "state"


@pytest.fixture
def store(aws: None) -> DynamoStateStore:
    client = boto3.client("dynamodb", region_name="eu-west-1")
    create_state_table(client, TABLE)
    return DynamoStateStore(TABLE, client)


def test_json_values_round_trip_including_floats_and_nesting(store: DynamoStateStore) -> None:
    item: dict[str, Any] = {
        "status": "processed",
        "chunks": 12,
        "ratio": 0.1,
        "negative": -2.5,
        "flag": True,
        "nothing": None,
        "empty": "",
        "tags": ["a", "b"],
        "nested": {"scores": [0.25, 3], "deep": {"x": 1e-7}},
    }
    store.put("docs", "s3/a.md", item)
    assert store.get("docs", "s3/a.md") == item


def test_integral_floats_come_back_as_equal_ints(store: DynamoStateStore) -> None:
    store.put("p", "s", {"x": 2.0})
    back = store.get("p", "s")
    assert back == {"x": 2}
    assert isinstance(back["x"], int)


def test_missing_item_is_none(store: DynamoStateStore) -> None:
    assert store.get("docs", "absent") is None


def test_put_replaces_the_whole_item(store: DynamoStateStore) -> None:
    store.put("p", "s", {"a": 1, "b": 2})
    store.put("p", "s", {"a": 3})
    assert store.get("p", "s") == {"a": 3}


def test_put_if_absent_conflicts_with_an_existing_item(store: DynamoStateStore) -> None:
    store.put("jobs", "j1", {"v": 1}, if_absent=True)
    with pytest.raises(ConflictError):
        store.put("jobs", "j1", {"v": 2}, if_absent=True)
    assert store.get("jobs", "j1") == {"v": 1}


def test_delete_removes_and_is_idempotent(store: DynamoStateStore) -> None:
    store.put("p", "s", {"a": 1})
    store.delete("p", "s")
    store.delete("p", "s")
    assert store.get("p", "s") is None


def test_query_returns_one_partition_by_prefix_in_sort_key_order(store: DynamoStateStore) -> None:
    for sk in ["v2", "v10", "v1", "w1"]:
        store.put("datasets", sk, {"sk_copy": sk})
    store.put("other", "v0", {})
    assert [sk for sk, _ in store.query("datasets", "v")] == ["v1", "v10", "v2"]
    assert [sk for sk, _ in store.query("datasets")] == ["v1", "v10", "v2", "w1"]
    assert dict(store.query("datasets", "w"))["w1"] == {"sk_copy": "w1"}


def test_query_follows_pages() -> None:
    client = boto3.client("dynamodb", region_name="eu-west-1")

    def row(sk: str) -> dict[str, Any]:
        return {"pk": {"S": "p"}, "sk": {"S": sk}, "n": {"N": "1"}}

    with Stubber(client) as stub:
        stub.add_response("query", {"Items": [row("a")], "LastEvaluatedKey": {"pk": {"S": "p"}, "sk": {"S": "a"}}})
        stub.add_response("query", {"Items": [row("b")]})
        assert [sk for sk, _ in DynamoStateStore(TABLE, client).query("p")] == ["a", "b"]
        stub.assert_no_pending_responses()


@pytest.mark.parametrize("item", [{"pk": "x"}, {"sk": "x"}, {"v": float("nan")}, {"v": [float("inf")]}])
def test_unstorable_items_are_refused_before_writing(item: dict[str, Any]) -> None:
    client = boto3.client("dynamodb", region_name="eu-west-1")
    with Stubber(client), pytest.raises(UnstorableItemError):
        DynamoStateStore(TABLE, client).put("p", "s", item)


def test_throughput_exceeded_is_transient() -> None:
    client = boto3.client("dynamodb", region_name="eu-west-1")
    with Stubber(client) as stub:
        stub.add_client_error("get_item", service_error_code="ProvisionedThroughputExceededException")
        with pytest.raises(TransientError):
            DynamoStateStore(TABLE, client).get("p", "s")


# -- query_page -----------------------------------------------------------------------------------


def _record_queries(store: DynamoStateStore) -> list[dict[str, Any]]:
    """The parameters of every Query the store sends from now on."""
    sent: list[dict[str, Any]] = []

    def keep(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))

    store.client.meta.events.register("provide-client-params.dynamodb.Query", keep)
    return sent


def test_a_dashboard_page_is_one_query_of_its_own_size() -> None:
    client = boto3.client("dynamodb", region_name="eu-west-1")
    row = {"pk": {"S": "models"}, "sk": {"S": "v9"}, "family": {"S": "qa"}}
    with Stubber(client) as stub:
        stub.add_response(
            "query",
            {"Items": [row], "Count": 1, "ScannedCount": 1},
            {
                "TableName": TABLE,
                "KeyConditionExpression": "pk = :pk AND sk < :hi",
                "ExpressionAttributeValues": {":pk": {"S": "models"}, ":hi": {"S": "v10"}},
                "ConsistentRead": True,
                "ScanIndexForward": False,
                "Limit": 26,
            },
        )
        rows = DynamoStateStore(TABLE, client).query_page("models", after="v10", limit=26, descending=True)
        stub.assert_no_pending_responses()
    assert rows == [("v9", {"family": "qa"})]


def test_pages_in_both_directions_with_a_prefix_and_after(store: DynamoStateStore) -> None:
    for sk in ["a/1", "a/2", "a/3", "a/4", "a0", "b/1", "a"]:
        store.put("p", sk, {"k": sk})
    sent = _record_queries(store)
    assert [sk for sk, _ in store.query_page("p", "a/", limit=2)] == ["a/1", "a/2"]
    assert [sk for sk, _ in store.query_page("p", "a/", after="a/2", limit=2)] == ["a/3", "a/4"]
    assert store.query_page("p", "a/", after="a/4", limit=2) == []
    assert [sk for sk, _ in store.query_page("p", "a/", limit=3, descending=True)] == ["a/4", "a/3", "a/2"]
    assert [sk for sk, _ in store.query_page("p", "a/", after="a/3", limit=3, descending=True)] == ["a/2", "a/1"]
    assert [sk for sk, _ in store.query_page("p", "a/", after="a/1", descending=True)] == []
    assert len(sent) == 6  # one request a page
    assert [q["KeyConditionExpression"] for q in sent[:2]] == [
        "pk = :pk AND begins_with(sk, :lo)",
        "pk = :pk AND sk BETWEEN :lo AND :hi",  # after "a/2" up to "a0", the end of "a/" (both excluded)
    ]
    assert sent[1]["ExpressionAttributeValues"][":hi"] == {"S": "a0"}
    assert sent[1]["Limit"] == 2 + 2  # room for the two excluded ends


@pytest.mark.parametrize("descending", [False, True])
def test_after_is_exclusive_whether_or_not_it_is_a_key(store: DynamoStateStore, descending: bool) -> None:
    for sk in ["x1", "x2", "x3"]:
        store.put("p", sk, {})
    for prefix in ("", "x"):
        got = [sk for sk, _ in store.query_page("p", prefix, after="x2", descending=descending)]
        assert got == (["x1"] if descending else ["x3"])
        got = [sk for sk, _ in store.query_page("p", prefix, after="x2a", descending=descending)]
        assert got == (["x2", "x1"] if descending else ["x3"])
    # "" is below every key: after it means all of them ascending, none descending.
    assert [sk for sk, _ in store.query_page("p", after="")] == ["x1", "x2", "x3"]
    assert store.query_page("p", after="", descending=True) == []


def test_the_prefix_ends_where_utf8_byte_order_says(store: DynamoStateStore) -> None:
    keys = [
        "a", "a\U0010ffff", "a\U0010ffffz", "b",  # "a"'s keys end before "b", past U+10FFFF
        "k\ud7ff", "k\ud7ffz", "k\ue000",  # after U+D7FF comes U+E000 (no surrogates in UTF-8)
        "m\uffff", "m\uffff\uffff", "m\U00010000",  # U+FFFF (3 bytes) then U+10000 (4 bytes)
        "\U0010ffff", "\U0010ffff\U0010ffff",  # a prefix of the last code point has no end
    ]  # fmt: skip
    for sk in keys:
        store.put("u", sk, {})
    cases = {
        "a": ["a", "a\U0010ffff", "a\U0010ffffz"],
        "k\ud7ff": ["k\ud7ff", "k\ud7ffz"],
        "m\uffff": ["m\uffff", "m\uffff\uffff"],
        "\U0010ffff": ["\U0010ffff", "\U0010ffff\U0010ffff"],
    }
    sent = _record_queries(store)
    for prefix, want in cases.items():
        assert [sk for sk, _ in store.query("u", prefix)] == want
        for descending in (False, True):
            ordered = sorted(want, reverse=descending)
            assert [sk for sk, _ in store.query_page("u", prefix, descending=descending)] == ordered
            # From the first key on: the BETWEEN range, whose end key (if stored) must not leak in.
            got = [sk for sk, _ in store.query_page("u", prefix, after=ordered[0], descending=descending)]
            assert got == ordered[1:], (prefix, descending)
            assert all(sk.startswith(prefix) for sk in got)
    bounds = [v["S"] for q in sent for k, v in q["ExpressionAttributeValues"].items() if k in (":lo", ":hi")]
    assert {"b", "k\ue000", "m\U00010000"} <= set(bounds)
    for bound in bounds:
        bound.encode("utf-8")  # a valid string: DynamoDB refuses a lone surrogate


def test_a_sparse_filter_reads_on_across_dynamodb_pages(
    store: DynamoStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dynamodb, "QUERY_PAGE_FILTERED_BATCH", 4)
    for i in range(30):
        store.put("docs", f"d{i:02}", {"status": "quarantined" if i in (2, 17, 29) else "processed"})
    sent = _record_queries(store)
    rows = store.query_page("docs", "d", limit=2, where={"status": "quarantined"})
    assert [sk for sk, _ in rows] == ["d02", "d17"]
    assert isinstance(rows, QueryPage) and rows.resume_after is None
    assert [q["Limit"] for q in sent] == [4, 4, 4, 4, 4]  # Limit counts evaluated items, not matches
    assert all("ExclusiveStartKey" in q for q in sent[1:])
    rows = store.query_page("docs", "d", after="d17", limit=2, where={"status": "quarantined"})
    assert [sk for sk, _ in rows] == ["d29"]
    rows = store.query_page("docs", "d", limit=5, where={"status": "quarantined"}, descending=True)
    assert [sk for sk, _ in rows] == ["d29", "d17", "d02"]


def test_big_items_make_short_dynamodb_pages_that_a_page_reads_across(store: DynamoStateStore) -> None:
    blob = "x" * 350_000  # three of them pass DynamoDB's 1 MB a response
    for i in range(6):
        store.put("big", f"b{i}", {"blob": blob, "i": i})
    sent = _record_queries(store)
    rows = store.query_page("big", limit=5)
    assert [item["i"] for _, item in rows] == [0, 1, 2, 3, 4]
    assert len(sent) > 1


def test_a_filtered_page_stops_at_its_cap_and_says_where_to_resume(
    store: DynamoStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dynamodb, "QUERY_PAGE_MAX_EVALUATED", 10)
    monkeypatch.setattr(dynamodb, "QUERY_PAGE_FILTERED_BATCH", 4)
    for i in range(40):
        store.put("docs", f"d{i:02}", {"status": "failed" if i in (5, 33) else "processed"})
    sent = _record_queries(store)
    rows = store.query_page("docs", limit=3, where={"status": "failed"})
    assert [sk for sk, _ in rows] == ["d05"]
    assert isinstance(rows, QueryPage) and rows.resume_after == "d09"  # 10 items evaluated, d00..d09
    assert sum(q["Limit"] for q in sent) == 10
    # Resuming from there is the next page: no match up to d19 or d29, then d33 and the partition's end.
    found, after, calls = [sk for sk, _ in rows], rows.resume_after, 0
    while after is not None:
        page = store.query_page("docs", after=after, limit=3, where={"status": "failed"})
        assert isinstance(page, QueryPage)
        found += [sk for sk, _ in page]
        after, calls = page.resume_after, calls + 1
    assert found == ["d05", "d33"] and calls == 3
    # Unfiltered pages are never cut short.
    assert len(store.query_page("docs", limit=30)) == 30


def test_the_request_cap_holds_for_big_items(store: DynamoStateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamodb, "QUERY_PAGE_MAX_REQUESTS", 2)
    blob = "x" * 350_000
    for i in range(8):
        store.put("big", f"b{i}", {"blob": blob, "status": "match" if i == 7 else "other"})
    sent = _record_queries(store)
    rows = store.query_page("big", limit=1, where={"status": "match"})
    assert rows == [] and len(sent) == 2
    assert isinstance(rows, QueryPage) and rows.resume_after is not None


def test_where_matches_what_the_ports_default_matches(store: DynamoStateStore) -> None:
    values: list[Any] = ["ok", "3", "", "None", "True", 3, -12, 0, 2.0, 0.5, 1e-07, True, False, None, [1], {"a": 1}]
    for i, value in enumerate(values):
        store.put("w", f"i{i:02}", {"v": value})
    store.put("w", "missing", {})
    wanted = ["ok", "3", "-12", "0", "2", "2.0", "0.5", "1e-07", "03", "3.0", "True", "False", "None", "", "x"]
    for text in wanted:
        for where in ({"v": text}, {"v": text, "pk": "None"}, {"v": text, "sk": "None"}):
            assert store.query_page("w", where=where) == StateStore.query_page(store, "w", where=where), where
    assert [sk for sk, _ in store.query_page("w", where={"v": "3"})] == ["i01", "i05"]  # "3" and 3
    assert [sk for sk, _ in store.query_page("w", where={"v": "None"})] == ["i03", "i13", "missing"]
    assert store.query_page("w", where={"sk": "i00"}) == []  # key attributes are not item fields
    # The one difference, documented: a list or map is never equal to text (the default compares its str).
    assert store.query_page("w", where={"v": "[1]"}) == []


def test_count_by_reads_only_the_fields_and_counts_like_the_default(store: DynamoStateStore) -> None:
    for i, value in enumerate(["a", "a", 3, 2.0, True, None, [1], "b"]):
        store.put("c", f"i{i}", {"v": value, "blob": "x" * 1000})
    store.put("c", "bare", {})
    sent = _record_queries(store)
    counts = store.count_by("c", ("v", "sk"))
    assert counts == StateStore.count_by(store, "c", ("v", "sk"))
    assert counts[("a", "None")] == 2 and counts[("None", "None")] == 2
    assert sent[0]["ProjectionExpression"] == "sk, #c0"
    assert store.count_by("c", ()) == {(): 9}
