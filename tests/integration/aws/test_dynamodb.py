"""DynamoStateStore on moto: JSON round trip, conditional writes, prefix queries."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from docllm.adapters.aws.dynamodb import DynamoStateStore, UnstorableItemError
from docllm.exceptions import ConflictError, TransientError
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
