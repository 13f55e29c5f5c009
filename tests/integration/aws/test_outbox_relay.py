"""The outbox on AWS: DynamoDB TransactWriteItems commits the change with its events, and the
stream relay (services/outbox/app.py) publishes what the inline attempt could not (moto)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest

from docllm.bootstrap import build_platform, reset_platforms
from docllm.events.contracts import StageFailed
from docllm.ports.state import Delete, Put
from docllm.service_layer.outbox import OUTBOX_PK, commit, pending
from tests.conftest import REPO
from tests.support.aws import create_state_table

from .conftest import REGION

TABLE, BUS = "docllm-state", "docllm-bus"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:123456789012:table/{TABLE}"


@pytest.fixture
def relay_handler(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Any]]:
    ddb = boto3.client("dynamodb", region_name=REGION)
    create_state_table(ddb, TABLE, stream=True)
    events = boto3.client("events", region_name=REGION)
    events.create_event_bus(Name=BUS)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="seen")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": [{"prefix": "docllm."}]}))
    events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    for k, v in {"DOCLLM_BACKEND": "aws", "DOCLLM_STATE_TABLE": TABLE, "DOCLLM_EVENT_BUS": BUS}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    reset_platforms()
    spec = importlib.util.spec_from_file_location("outbox_app", REPO / "services/outbox/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module, (sqs, url)
    reset_platforms()


def stream_event(keys: list[str]) -> dict[str, Any]:
    """INSERT records of the outbox partition, shaped as DynamoDB Streams delivers them to Lambda."""
    return {
        "Records": [
            {
                "eventID": f"{n}",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": {
                    "Keys": {"pk": {"S": OUTBOX_PK}, "sk": {"S": key}},
                    "SequenceNumber": f"{100 + n}",
                    "SizeBytes": 100,
                    "StreamViewType": "NEW_IMAGE",
                },
                "eventSourceARN": f"{TABLE_ARN}/stream/2026-01-01T00:00:00.000",
            }
            for n, key in enumerate(keys)
        ]
    }


class _Context:
    function_name = "OutboxRelayFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:OutboxRelayFunction"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def received(sqs: Any, url: str) -> list[dict[str, Any]]:
    out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"]) for m in out]


def test_a_change_whose_publish_failed_is_relayed_from_the_stream_once(relay_handler, monkeypatch) -> None:
    module, (sqs, url) = relay_handler
    p = build_platform()
    with monkeypatch.context() as m:
        m.setattr(type(p.bus), "publish", lambda self, events: (_ for _ in ()).throw(RuntimeError("down")))
        commit(p, [Put("jobs", "j", {"status": "Failed"})], [StageFailed(stage="train", subject="j", reason="x")])
    assert p.state.get("jobs", "j") == {"status": "Failed"}
    ((key, _),) = pending(p)
    response = module.handler(stream_event([key]), _Context())
    assert response == {"batchItemFailures": []}
    assert [e["detail"]["subject"] for e in received(sqs, url)] == ["j"]
    assert pending(p) == []
    # A second delivery of the same stream record (at-least-once) publishes nothing more.
    module.handler(stream_event([key]), _Context())
    assert received(sqs, url) == []


def test_the_scheduled_sweep_publishes_entries_older_than_a_minute_only(relay_handler, monkeypatch) -> None:
    module, (sqs, url) = relay_handler
    p = build_platform()
    with monkeypatch.context() as m:
        m.setattr(type(p.bus), "publish", lambda self, events: (_ for _ in ()).throw(RuntimeError("down")))
        commit(p, [], [StageFailed(stage="train", subject="old", reason="x")])
        commit(p, [], [StageFailed(stage="train", subject="new", reason="x")])
    ((old_key, old_event), (new_key, _)) = pending(p)
    # Age the first entry: its key starts with the commit time in nanoseconds.
    aged = f"{int(old_key.partition('#')[0]) - 120 * 10**9:020d}#{old_key.partition('#')[2]}"
    p.state.transact([Delete(OUTBOX_PK, old_key), Put(OUTBOX_PK, aged, {"event": old_event})])
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    assert module.handler(scheduled, _Context()) == {"relayed": 1}
    assert [e["detail"]["subject"] for e in received(sqs, url)] == ["old"]
    assert [k for k, _ in pending(p)] == [new_key]
