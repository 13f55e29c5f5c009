"""EventBridgeBus: batching within PutEvents limits, partial-failure retries, delivery on moto."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from docllm.adapters.aws.eventbridge import (
    MAX_REQUEST_BYTES,
    EventBridgeBus,
    EventRejectedError,
    PublishError,
    batch_entries,
    entry_size,
)
from docllm.events.envelope import BusEvent
from docllm.exceptions import PermanentError, TransientError


def event(n: int, detail_bytes: int = 10) -> BusEvent:
    return BusEvent(
        source="docllm.test",
        detail_type="Thing Happened",
        resources=[f"arn:aws:s3:::raw/{n}"],
        detail={"n": n, "pad": "x" * detail_bytes},
    )


class RecordingClient:
    """Answers PutEvents with scripted per-entry error codes and records each request."""

    def __init__(self, failures: list[dict[int, str]] | None = None) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        self.failures = failures or []  # per call: position in request -> ErrorCode

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 (boto3 spelling)
        self.requests.append(Entries)
        script = self.failures[len(self.requests) - 1] if len(self.requests) <= len(self.failures) else {}
        results = [
            {"ErrorCode": script[i], "ErrorMessage": "scripted"} if i in script else {"EventId": f"e{i}"}
            for i in range(len(Entries))
        ]
        return {"FailedEntryCount": len(script), "Entries": results}


def make_bus(client: Any, **kwargs: Any) -> EventBridgeBus:
    return EventBridgeBus("docllm", client, sleep=lambda _: None, **kwargs)


def test_events_are_sent_in_requests_of_at_most_ten() -> None:
    client = RecordingClient()
    make_bus(client).publish([event(i) for i in range(25)])
    assert [len(r) for r in client.requests] == [10, 10, 5]
    sent = [json.loads(e["Detail"])["n"] for r in client.requests for e in r]
    assert sent == list(range(25))


def test_requests_stay_within_256_kib() -> None:
    client = RecordingClient()
    make_bus(client).publish([event(i, detail_bytes=100 * 1024) for i in range(5)])
    assert all(sum(entry_size(e) for e in r) <= MAX_REQUEST_BYTES for r in client.requests)
    assert [len(r) for r in client.requests] == [2, 2, 1]


def test_batching_keeps_order_and_splits_on_size() -> None:
    entry = {"Source": "s", "DetailType": "d", "Detail": "x" * 100}
    assert batch_entries([entry] * 5, max_bytes=250) == [[0, 1], [2, 3], [4]]


def test_entry_carries_source_detail_type_json_detail_resources_time_and_bus() -> None:
    client = RecordingClient()
    ev = event(7)
    make_bus(client).publish([ev])
    (entry,) = client.requests[0]
    assert entry["Source"] == "docllm.test"
    assert entry["DetailType"] == "Thing Happened"
    assert json.loads(entry["Detail"]) == ev.detail
    assert entry["Resources"] == ["arn:aws:s3:::raw/7"]
    assert entry["Time"] == ev.time
    assert entry["EventBusName"] == "docllm"


def test_only_failed_entries_are_resent() -> None:
    client = RecordingClient(failures=[{1: "ThrottlingException", 3: "InternalFailure"}])
    make_bus(client).publish([event(i) for i in range(5)])
    assert len(client.requests) == 2
    assert [json.loads(e["Detail"])["n"] for e in client.requests[1]] == [1, 3]


def test_entries_still_failing_after_the_last_attempt_raise_transient_error_naming_them() -> None:
    events = [event(i) for i in range(3)]
    client = RecordingClient(
        failures=[{2: "ThrottlingException"}, {0: "ThrottlingException"}, {0: "ThrottlingException"}]
    )
    with pytest.raises(PublishError) as info:
        make_bus(client, max_attempts=3).publish(events)
    assert isinstance(info.value, TransientError)
    assert [(f.event_id, f.code) for f in info.value.failures] == [(events[2].id, "ThrottlingException")]
    assert events[2].id in str(info.value)
    assert len(client.requests) == 3


def test_refused_entries_are_not_retried_and_raise_permanent_error() -> None:
    events = [event(i) for i in range(2)]
    client = RecordingClient(failures=[{0: "MalformedDetail"}])
    with pytest.raises(EventRejectedError) as info:
        make_bus(client).publish(events)
    assert isinstance(info.value, PermanentError)
    assert [f.event_id for f in info.value.failures] == [events[0].id]
    assert len(client.requests) == 1


def test_an_event_over_the_size_limit_is_refused_before_anything_is_sent() -> None:
    client = RecordingClient()
    with pytest.raises(EventRejectedError):
        make_bus(client).publish([event(0), event(1, detail_bytes=MAX_REQUEST_BYTES)])
    assert client.requests == []


def test_throttled_request_is_a_transient_error() -> None:
    client = boto3.client("events", region_name="eu-west-1")
    with Stubber(client) as stub:
        stub.add_client_error("put_events", service_error_code="ThrottlingException", http_status_code=400)
        with pytest.raises(TransientError):
            make_bus(client).publish([event(0)])


def test_published_event_reaches_a_rule_target_on_moto(aws: None) -> None:
    events = boto3.client("events", region_name="eu-west-1")
    sqs = boto3.client("sqs", region_name="eu-west-1")
    events.create_event_bus(Name="docllm")
    url = sqs.create_queue(QueueName="target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="things", EventBusName="docllm", EventPattern=json.dumps({"detail-type": ["Thing Happened"]}))
    events.put_targets(Rule="things", EventBusName="docllm", Targets=[{"Id": "q", "Arn": arn}])
    make_bus(events).publish([event(42)])
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    delivered = BusEvent.model_validate(json.loads(message["Body"]))
    assert delivered.detail == event(42).detail
    assert delivered.source == "docllm.test"
    assert delivered.resources == ["arn:aws:s3:::raw/42"]
