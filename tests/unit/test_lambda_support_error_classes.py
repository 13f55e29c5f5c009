"""handle_sqs_events maps error *types* to outcomes: permanent → the queue's DLQ at once, anything else → retried.

The platform is a stand-in whose queue records ``dead_letter`` calls, so these tests
pin down what the handler asks of the Queue port, the same on AWS and locally.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from docllm import lambda_support
from docllm.exceptions import ConfigurationError, ContractError, PermanentError, TransientError
from docllm.ports.queue import Message

QUEUE = "docllm-dev-IngestQueue-AbC123"
ARN = f"arn:aws:sqs:eu-west-1:123456789012:{QUEUE}"


class _Detail(BaseModel):
    size: int


@dataclass
class FakeQueue:
    dead: list[tuple[str, Message, str]] = field(default_factory=list)
    broken: bool = False

    def dead_letter(self, queue: str, message: Message, *, reason: str) -> None:
        if self.broken:
            raise TransientError("SQS SendMessage failed: Throttling")
        self.dead.append((queue, message, reason))


class _Metrics:
    def flush(self) -> None:
        pass


@dataclass
class _Settings:
    data_dir: Path | None
    idempotency_table: str = "IdempotencyTable"


class FakePlatform:
    def __init__(self, data_dir: Path) -> None:
        self.queue = FakeQueue()
        self.metrics = _Metrics()
        self.settings = _Settings(data_dir)

    def idempotency_store(self) -> Any:
        from docllm.adapters.local.idempotency import SqliteIdempotencyStore

        assert self.settings.data_dir is not None
        return SqliteIdempotencyStore(self.settings.data_dir / "idempotency.db")


@dataclass
class Context:
    function_name: str = "IngestFunction"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:IngestFunction"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePlatform:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    p = FakePlatform(tmp_path)
    monkeypatch.setattr(lambda_support, "build_platform", lambda: p)
    lambda_support._STORES.clear()
    return p


def record(key: str, *, receive_count: int = 1, arn: str = ARN, body: str | None = None) -> dict[str, Any]:
    event = {"id": str(uuid.uuid4()), "detail-type": "Object Created", "detail": {"key": key}}
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": f"receipt-{uuid.uuid4()}",
        "body": json.dumps(event) if body is None else body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1700000000000",
            "SenderId": "AROA:events",
            "ApproximateFirstReceiveTimestamp": "1700000000001",
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "eu-west-1",
    }


def by_key(platform: Any, event: dict[str, Any]) -> dict[str, Any]:
    key = event["detail"]["key"]
    if key.startswith("contract/"):
        raise ContractError(f"{key} does not match its contract")
    if key.startswith("config/"):
        raise ConfigurationError("DOCLLM_SEARCH_ENDPOINT is not set")
    if key.startswith("permanent/"):
        raise PermanentError(f"cannot process {key}")
    if key.startswith("invalid/"):
        _Detail.model_validate({"size": "not a number"})
    if key.startswith("transient/"):
        raise TransientError("throttled")
    if key.startswith("crash/"):
        raise RuntimeError("unexpected")
    return {"ok": key}


def failures(response: dict[str, Any]) -> set[str]:
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("contract/a.md", "ContractError: contract/a.md does not match its contract"),
        ("config/a.md", "ConfigurationError: DOCLLM_SEARCH_ENDPOINT is not set"),
        ("permanent/a.md", "PermanentError: cannot process permanent/a.md"),
        ("invalid/a.md", "ValidationError: 1 validation error for _Detail"),
    ],
)
def test_a_permanent_error_dead_letters_the_record_at_once_and_reports_it_done(platform, key, reason):
    rec = record(key)
    response = lambda_support.handle_sqs_events({"Records": [rec]}, Context(), by_key)
    assert failures(response) == set()
    ((queue, message, why),) = platform.queue.dead
    assert queue == QUEUE  # the last segment of eventSourceARN
    assert (message.message_id, message.body, message.receipt) == (rec["messageId"], rec["body"], rec["receiptHandle"])
    assert message.receive_count == 1 and message.sent_at_ms == 1700000000000
    assert why.startswith(reason)


def test_a_body_that_is_not_json_is_a_contract_error(platform):
    rec = record("x", body="not json {")
    response = lambda_support.handle_sqs_events({"Records": [rec]}, Context(), by_key)
    assert failures(response) == set()
    ((_, _, why),) = platform.queue.dead
    assert why.startswith("ContractError: ")


@pytest.mark.parametrize("key", ["transient/a.md", "crash/a.md"])
def test_other_errors_are_reported_as_failures_for_the_queue_to_retry(platform, key):
    good, bad = record("ok/a.md"), record(key)
    response = lambda_support.handle_sqs_events({"Records": [good, bad]}, Context(), by_key)
    assert failures(response) == {bad["messageId"]}
    assert platform.queue.dead == []
    assert lambda_support.LAST_FAILURES.pop(bad["messageId"]).startswith(("TransientError: throttled", "RuntimeError"))


def test_a_mixed_batch_retries_only_the_transient_failure(platform):
    recs = [record("ok/a.md"), record("contract/b.md"), record("transient/c.md")]
    response = lambda_support.handle_sqs_events({"Records": recs}, Context(), by_key)
    assert failures(response) == {recs[2]["messageId"]}
    assert [m.message_id for _, m, _ in platform.queue.dead] == [recs[1]["messageId"]]


def test_reasons_of_a_batch_that_failed_entirely_are_kept_per_record(platform):
    recs = [record("transient/a.md"), record("crash/b.md")]
    with pytest.raises(Exception, match="All records failed"):
        lambda_support.handle_sqs_events({"Records": recs}, Context(), by_key)
    assert lambda_support.LAST_FAILURES.pop(recs[0]["messageId"]) == "TransientError: throttled"
    assert lambda_support.LAST_FAILURES.pop(recs[1]["messageId"]) == "RuntimeError: unexpected"


def test_when_dead_lettering_fails_the_record_is_retried_with_the_original_reason(platform):
    platform.queue.broken = True
    rec = record("contract/a.md")
    with pytest.raises(Exception, match="All records failed"):
        lambda_support.handle_sqs_events({"Records": [rec]}, Context(), by_key)
    assert lambda_support.LAST_FAILURES.pop(rec["messageId"]).startswith("ContractError: contract/a.md")


def test_a_record_without_a_source_queue_is_left_to_the_queue_retries(platform):
    rec = record("contract/a.md", arn="")
    with pytest.raises(Exception, match="All records failed"):
        lambda_support.handle_sqs_events({"Records": [rec]}, Context(), by_key)
    assert platform.queue.dead == []
    lambda_support.LAST_FAILURES.pop(rec["messageId"])


def test_a_permanently_failed_record_is_not_cached_as_done_so_a_redrive_runs_it_again(platform):
    calls: list[str] = []
    fixed = False

    def handle(_platform: Any, event: dict[str, Any]) -> dict[str, Any]:
        calls.append(event["id"])
        if not fixed:
            raise ContractError("not yet")
        return {"ok": True}

    handle.__qualname__ = "handle_redrive_test"
    rec = record("a.md")
    assert (
        failures(lambda_support.handle_sqs_events({"Records": [rec]}, Context(), handle, idempotency_key="id")) == set()
    )
    assert len(platform.queue.dead) == 1
    fixed = True
    # The redrive delivers the same body again (a new message on SQS, the same one locally).
    again = {**rec, "messageId": str(uuid.uuid4()), "attributes": {**rec["attributes"], "ApproximateReceiveCount": "1"}}
    assert (
        failures(lambda_support.handle_sqs_events({"Records": [again]}, Context(), handle, idempotency_key="id"))
        == set()
    )
    assert len(calls) == 2
    # ... and once it succeeded, a redelivery is answered from the idempotency store.
    lambda_support.handle_sqs_events({"Records": [again]}, Context(), handle, idempotency_key="id")
    assert len(calls) == 2 and len(platform.queue.dead) == 1
