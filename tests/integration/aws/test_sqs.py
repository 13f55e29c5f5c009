"""SqsQueue on moto (behaviour) and Stubber (exact visibility changes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from docllm.adapters.aws.sqs import DEFAULT_DEAD_REASON, MAX_VISIBILITY_S, SqsQueue, backoff_seconds
from docllm.exceptions import NotFoundError
from docllm.ports.queue import Message

MAX_RECEIVES = 3


@pytest.fixture
def sqs_client(aws: None) -> Any:
    return boto3.client("sqs", region_name="eu-west-1")


@pytest.fixture
def queue(sqs_client: Any) -> Iterator[SqsQueue]:
    dlq_url = sqs_client.create_queue(QueueName="ingest-dlq")["QueueUrl"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs_client.create_queue(
        QueueName="ingest",
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}),
        },
    )
    # Backoff 0 makes a retried message visible at once, so tests need no sleeps.
    yield SqsQueue(client=sqs_client, backoff_base_s=0)


def test_received_message_carries_counts_and_timestamps(queue: SqsQueue) -> None:
    message_id = queue.send("ingest", "hello")
    (m,) = queue.receive("ingest")
    assert (m.message_id, m.body, m.receive_count) == (message_id, "hello", 1)
    assert m.sent_at_ms > 0
    assert m.first_received_at_ms is not None and m.first_received_at_ms >= m.sent_at_ms


def test_received_message_is_hidden_until_deleted(queue: SqsQueue) -> None:
    queue.send("ingest", "once")
    (m,) = queue.receive("ingest")
    assert queue.receive("ingest") == []
    queue.delete("ingest", m.receipt)
    assert queue.stats("ingest").in_flight == 0


def test_receive_gathers_more_than_ten_in_several_calls(queue: SqsQueue) -> None:
    for i in range(15):
        queue.send("ingest", str(i))
    got = queue.receive("ingest", max_messages=15)
    assert sorted(int(m.body) for m in got) == list(range(15))


def test_retried_message_comes_back_with_a_higher_receive_count(queue: SqsQueue) -> None:
    queue.send("ingest", "flaky")
    (first,) = queue.receive("ingest")
    queue.retry_later("ingest", first, reason="boom")
    (second,) = queue.receive("ingest")
    assert second.message_id == first.message_id
    assert second.receive_count == 2


def test_message_goes_to_the_dlq_with_its_reason_after_max_receives(queue: SqsQueue) -> None:
    queue.send("ingest", "poison")
    for _ in range(MAX_RECEIVES):
        (m,) = queue.receive("ingest")
        queue.retry_later("ingest", m, reason="ValueError: bad pdf")
    assert queue.receive("ingest") == []
    (dead,) = queue.dead_letters("ingest")
    assert dead.body == "poison"
    assert dead.reason == "ValueError: bad pdf"
    assert dead.source_queue == "ingest"
    assert dead.receive_count == MAX_RECEIVES
    assert queue.stats("ingest").dead == 1


def test_peeking_dead_letters_does_not_consume_them(queue: SqsQueue) -> None:
    queue.send("ingest", "poison")
    for _ in range(MAX_RECEIVES):
        (m,) = queue.receive("ingest")
        queue.retry_later("ingest", m, reason="r")
    first = queue.dead_letters("ingest")
    second = queue.dead_letters("ingest")
    assert [d.body for d in first] == [d.body for d in second] == ["poison"]


def test_messages_redriven_by_sqs_itself_get_the_default_reason(queue: SqsQueue, sqs_client: Any) -> None:
    queue.send("ingest", "abandoned")
    for _ in range(MAX_RECEIVES):
        # A consumer that crashed: the message reappears when its visibility ends (0 here).
        assert len(queue.receive("ingest", visibility_timeout=0)) == 1
    assert queue.receive("ingest") == []  # this receive is where SQS moves it
    (dead,) = queue.dead_letters("ingest")
    assert dead.body == "abandoned"
    assert dead.reason == DEFAULT_DEAD_REASON


def test_stats_count_visible_in_flight_and_delayed(queue: SqsQueue) -> None:
    for body in ("a", "b", "c"):
        queue.send("ingest", body)
    queue.send("ingest", "later", delay_seconds=600)
    queue.receive("ingest", max_messages=1)
    stats = queue.stats("ingest")
    assert (stats.visible, stats.in_flight, stats.delayed, stats.dead) == (2, 1, 1, 0)


def test_unknown_queue_raises_not_found(queue: SqsQueue) -> None:
    with pytest.raises(NotFoundError):
        queue.send("no-such-queue", "x")


def test_queue_url_is_looked_up_once(queue: SqsQueue, sqs_client: Any) -> None:
    calls: list[str] = []
    sqs_client.meta.events.register("before-call.sqs.GetQueueUrl", lambda **_: calls.append("GetQueueUrl"))
    queue.send("ingest", "a")
    queue.send("ingest", "b")
    assert calls == ["GetQueueUrl"]


def test_configured_urls_need_no_lookup(sqs_client: Any) -> None:
    url = sqs_client.create_queue(QueueName="plain")["QueueUrl"]
    calls: list[str] = []
    sqs_client.meta.events.register("before-call.sqs.GetQueueUrl", lambda **_: calls.append("GetQueueUrl"))
    q = SqsQueue({"plain": url}, client=sqs_client)
    q.send("plain", "x")
    assert calls == []
    assert q.dead_letters("plain") == []  # no redrive policy, no DLQ


@pytest.mark.parametrize(("count", "expected"), [(1, 30), (2, 60), (4, 240)])
def test_retry_later_backs_off_exponentially_with_the_receive_count(count: int, expected: int) -> None:
    client = boto3.client("sqs", region_name="eu-west-1")
    q = SqsQueue({"q": "https://sqs.eu-west-1.amazonaws.com/1/q"}, client=client, backoff_base_s=30)
    message = Message(message_id="m", body="b", receipt="r", receive_count=count, sent_at_ms=0)
    with Stubber(client) as stub:
        stub.add_response("get_queue_attributes", {"Attributes": {}})
        stub.add_response(
            "change_message_visibility",
            {},
            {
                "QueueUrl": "https://sqs.eu-west-1.amazonaws.com/1/q",
                "ReceiptHandle": "r",
                "VisibilityTimeout": expected,
            },
        )
        q.retry_later("q", message, reason="x")
        stub.assert_no_pending_responses()


def test_backoff_never_exceeds_the_sqs_maximum() -> None:
    assert backoff_seconds(10_000, base_s=60, max_s=10**9) == MAX_VISIBILITY_S
