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


# --- dead_letter: a permanent failure goes to the DLQ at once (issue 12) ----------------------------


@pytest.fixture(autouse=True)
def _no_function_dlq(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside Lambda the DLQ comes from the redrive policy, whatever the shell exports."""
    monkeypatch.delenv("DOCLLM_DEAD_LETTER_QUEUE", raising=False)


def _dlq_messages(sqs_client: Any, url: str) -> list[dict[str, Any]]:
    return sqs_client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=0
    ).get("Messages", [])


def test_dead_letter_sends_a_copy_with_its_reason_source_and_original_id(queue: SqsQueue, sqs_client: Any) -> None:
    original_id = queue.send("ingest", "not an event")
    (m,) = queue.receive("ingest")
    queue.dead_letter("ingest", m, reason="ContractError: the body is not JSON")
    # The consumer acknowledges the original as it does every message it is done with.
    queue.delete("ingest", m.receipt)
    assert queue.receive("ingest") == []
    (copy,) = _dlq_messages(sqs_client, queue.url("ingest-dlq"))
    attrs = {k: v["StringValue"] for k, v in copy["MessageAttributes"].items()}
    assert copy["Body"] == "not an event"
    assert attrs["docllm-dead-reason"] == "ContractError: the body is not JSON"
    assert attrs["docllm-source-queue"] == "ingest"
    assert attrs["docllm-message-id"] == original_id
    (dead,) = queue.dead_letters("ingest")
    assert (dead.message_id, dead.body, dead.receive_count) == (original_id, "not an event", 1)
    assert dead.reason == "ContractError: the body is not JSON"


def test_dead_letter_uses_the_functions_dlq_from_the_environment_without_lookups(
    sqs_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dlq = sqs_client.create_queue(QueueName="fn-dlq")["QueueUrl"]
    monkeypatch.setenv("DOCLLM_DEAD_LETTER_QUEUE", dlq)
    calls: list[str] = []
    for op in ("GetQueueUrl", "GetQueueAttributes"):
        sqs_client.meta.events.register(f"before-call.sqs.{op}", lambda op=op, **_: calls.append(op))
    q = SqsQueue(client=sqs_client)
    message = Message(message_id="orig-1", body="{}", receipt="r", receive_count=2, sent_at_ms=1)
    q.dead_letter("docllm-dev-IngestQueue-X", message, reason="PermanentError: no")
    assert calls == []  # the Lambda role may send to its DLQ, nothing more
    (copy,) = _dlq_messages(sqs_client, dlq)
    attrs = {k: v["StringValue"] for k, v in copy["MessageAttributes"].items()}
    assert attrs["docllm-source-queue"] == "docllm-dev-IngestQueue-X"
    assert attrs["docllm-message-id"] == "orig-1" and attrs["docllm-receive-count"] == "2"


def test_dead_letter_reasons_are_made_safe_for_sqs_attributes(queue: SqsQueue, sqs_client: Any) -> None:
    queue.send("ingest", "x")
    (m,) = queue.receive("ingest")
    queue.dead_letter("ingest", m, reason="ValueError: bad \x00 byte " + "y" * 5000)
    (dead,) = queue.dead_letters("ingest")
    assert dead.reason.startswith("ValueError: bad ") and "\x00" not in dead.reason
    assert len(dead.reason) <= 2000


def test_a_queue_without_a_dlq_cannot_dead_letter(sqs_client: Any) -> None:
    url = sqs_client.create_queue(QueueName="plain")["QueueUrl"]
    q = SqsQueue({"plain": url}, client=sqs_client)
    message = Message(message_id="m", body="b", receipt="r", receive_count=1, sent_at_ms=0)
    with pytest.raises(NotFoundError, match="no dead-letter queue"):
        q.dead_letter("plain", message, reason="x")


# --- the Lambda handler on AWS: dead-letters permanent failures itself, keeps redrives possible -------


@pytest.fixture
def lambda_env(sqs_client: Any, queue: SqsQueue, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from docllm import lambda_support
    from docllm.bootstrap import reset_platforms

    dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
    dynamodb.create_table(
        TableName="IdempotencyTable",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    url = queue.url("ingest")
    arn = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    monkeypatch.setenv("DOCLLM_BACKEND", "aws")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("DOCLLM_DEAD_LETTER_QUEUE", queue.url("ingest-dlq"))
    reset_platforms()
    lambda_support._STORES.clear()
    yield {"url": url, "arn": arn, "dlq": queue.url("ingest-dlq")}
    reset_platforms()
    lambda_support._STORES.clear()


class _Context:
    function_name = "IngestFunction"
    aws_request_id = "req-1"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:IngestFunction"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _esm_event(sqs_client: Any, env: dict[str, str]) -> dict[str, Any]:
    """Receive what the queue holds and shape it as the Lambda event source mapping does."""
    got = sqs_client.receive_message(
        QueueUrl=env["url"], MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    ).get("Messages", [])
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": env["arn"],
                "awsRegion": "eu-west-1",
            }
            for m in got
        ]
    }


def test_the_handler_on_aws_dead_letters_a_permanent_failure_and_a_redrive_runs_it_again(
    lambda_env: dict[str, str], sqs_client: Any, queue: SqsQueue
) -> None:
    from docllm.exceptions import ContractError
    from docllm.lambda_support import handle_sqs_events

    calls: list[str] = []
    fixed = False

    def handle(_platform: Any, event: dict[str, Any]) -> dict[str, Any]:
        calls.append(event["id"])
        if not fixed:
            raise ContractError(f"event {event['id']} is not what this stage takes")
        return {"ok": True}

    body = json.dumps({"id": "ev-1", "detail-type": "Object Created", "detail": {}})
    original_id = sqs_client.send_message(QueueUrl=lambda_env["url"], MessageBody=body)["MessageId"]
    event = _esm_event(sqs_client, lambda_env)
    response = handle_sqs_events(event, _Context(), handle, idempotency_key="id")  # type: ignore[arg-type]
    assert response["batchItemFailures"] == []  # Lambda deletes it: it is in the DLQ already
    (dead,) = queue.dead_letters("ingest")
    assert dead.body == body and dead.message_id == original_id
    assert dead.reason == "ContractError: event ev-1 is not what this stage takes"
    assert dead.source_queue == lambda_env["arn"].rsplit(":", 1)[-1]

    # The fault is fixed; an operator moves the DLQ back (StartMessageMoveTask): the same body, a new message.
    fixed = True
    sqs_client.send_message(QueueUrl=lambda_env["url"], MessageBody=dead.body)
    response = handle_sqs_events(_esm_event(sqs_client, lambda_env), _Context(), handle, idempotency_key="id")  # type: ignore[arg-type]
    assert response["batchItemFailures"] == []
    assert calls == ["ev-1", "ev-1"]  # not answered from the idempotency store: it never succeeded
