"""The local runtime honours error classes end to end (issue 12).

A permanent error (``PermanentError`` and its subclasses, a pydantic
``ValidationError``) sends the message to its queue's DLQ at once with the
reason; a transient one is retried later and later, then dead-lettered with its
reason; a dead-lettered message is not remembered as done by idempotency, so
``docllm dlq redrive`` runs it again.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest

from docllm.adapters.local.queue import QueueConfig
from docllm.cli.main import main
from docllm.runtime.local import LocalRuntime

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  RawBucket:
    Type: AWS::S3::Bucket
    Properties:
      VersioningConfiguration: {Status: Enabled}
      NotificationConfiguration: {EventBridgeConfiguration: {EventBridgeEnabled: true}}
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
      RedrivePolicy: {deadLetterTargetArn: !GetAtt WorkQueueDLQ.Arn, maxReceiveCount: 3}
  WorkQueueDLQ:
    Type: AWS::SQS::Queue
  WorkRule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern:
        source: [aws.s3]
        detail-type: [Object Created]
      Targets: [{Id: q, Arn: !GetAtt WorkQueue.Arn}]
  WorkFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ./
      Handler: handlers.work
      Timeout: 10
      Events:
        Q:
          Type: SQS
          Properties: {Queue: !GetAtt WorkQueue.Arn, BatchSize: 5, FunctionResponseTypes: [ReportBatchItemFailures]}
"""

HANDLERS = """
import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from docllm.exceptions import ConfigurationError, ContractError, PermanentError, TransientError
from docllm.lambda_support import handle_sqs_events


class Size(BaseModel):
    size: int


def _work(_platform, event):
    key = event["detail"]["object"]["key"]
    with Path(os.environ["DOCLLM_TEST_RECORD"]).open("a") as f:
        f.write(json.dumps({"key": key, "t": time.monotonic()}) + "\\n")
    if key.startswith("contract/"):
        raise ContractError(f"{key} is not a document event")
    if key.startswith("config/"):
        raise ConfigurationError("DOCLLM_SEARCH_ENDPOINT is not set")
    if key.startswith("invalid/"):
        Size.model_validate({"size": key})
    if key.startswith("transient/"):
        raise TransientError(f"throttled on {key}")
    if key.startswith("later/") and not Path(os.environ["DOCLLM_TEST_FIXED"]).exists():
        raise PermanentError(f"{key} needs a fix first")
    return {"ok": key}


def work(event, context):
    return handle_sqs_events(
        event, context, _work, idempotency_key='[detail.object.key, detail.object."version-id"]'
    )
"""


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    app = tmp_path / "app"
    app.mkdir()
    (app / "template.yaml").write_text(TEMPLATE, encoding="utf-8")
    (app / "handlers.py").write_text(HANDLERS, encoding="utf-8")
    monkeypatch.setenv("DOCLLM_TEST_RECORD", str(tmp_path / "attempts.jsonl"))
    monkeypatch.setenv("DOCLLM_TEST_FIXED", str(tmp_path / "fixed"))
    # Backoffs of 0.3 s then 1.2 s: far enough apart that polling and load cannot blur the order.
    monkeypatch.setattr(QueueConfig, "backoff_s", lambda self, n: 0.3 * 4 ** (n - 1))
    rt = LocalRuntime(tmp_path / "data", template=app / "template.yaml", port=0, auth=False)
    rt.start()
    yield rt
    rt.stop()


def attempts(tmp_path: Path, key: str) -> list[float]:
    path = tmp_path / "attempts.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r["t"] for r in rows if r["key"] == key]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("contract/a.md", "ContractError: contract/a.md is not a document event"),
        ("config/a.md", "ConfigurationError: DOCLLM_SEARCH_ENDPOINT is not set"),
        ("invalid/a.md", "ValidationError: 1 validation error for Size"),
    ],
)
def test_a_permanent_error_dead_letters_the_message_at_once_with_its_reason(runtime, tmp_path, key, reason):
    runtime.platform.objects.put("RawBucket", key, b"# A")
    assert runtime.wait_idle(10)
    q = runtime.platform.local_queue
    (dead,) = q.dead_letters("WorkQueue")
    assert dead.reason.startswith(reason)
    assert dead.receive_count == 1
    assert len(attempts(tmp_path, key)) == 1  # not retried


def test_a_transient_error_is_retried_later_and_later_then_dead_lettered_with_its_reason(runtime, tmp_path):
    runtime.platform.objects.put("RawBucket", "transient/a.md", b"# A")
    q = runtime.platform.local_queue
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and q.stats("WorkQueue").dead == 0:
        time.sleep(0.05)
    (dead,) = q.dead_letters("WorkQueue")
    assert dead.receive_count == 3  # maxReceiveCount
    assert dead.reason == "TransientError: throttled on transient/a.md"
    tries = attempts(tmp_path, "transient/a.md")
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert len(tries) == 3
    # Each retry waits at least its backoff (polling and load only add to it), and the second waits longer.
    assert gaps[0] >= 0.3 and gaps[1] >= 1.2 and gaps[1] > gaps[0] + 0.3


def test_a_dead_lettered_message_runs_again_after_a_redrive(runtime, tmp_path, capsys):
    runtime.platform.objects.put("RawBucket", "later/a.md", b"# A")
    assert runtime.wait_idle(10)
    q = runtime.platform.local_queue
    (dead,) = q.dead_letters("WorkQueue")
    assert dead.reason == "PermanentError: later/a.md needs a fix first"
    assert main(["--data-dir", str(runtime.data_dir), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    (row,) = [r for r in status["queues"] if r["queue"] == "WorkQueue"]
    assert row["dead"] == 1 and "needs a fix first" in row["dead_letters"][0]["reason"]

    (tmp_path / "fixed").touch()
    assert main(["--data-dir", str(runtime.data_dir), "dlq", "redrive", "WorkQueue"]) == 0
    assert runtime.wait_idle(10)
    assert len(attempts(tmp_path, "later/a.md")) == 2  # idempotency did not remember the failure as done
    assert q.dead_letters("WorkQueue") == []
    assert q.stats("WorkQueue").dead == 0


def test_a_permanent_failure_does_not_hold_back_the_rest_of_its_batch(runtime, tmp_path):
    for key in ("ok/1.md", "contract/2.md", "ok/3.md"):
        runtime.platform.objects.put("RawBucket", key, b"# A")
    assert runtime.wait_idle(10)
    assert [len(attempts(tmp_path, k)) for k in ("ok/1.md", "contract/2.md", "ok/3.md")] == [1, 1, 1]
    assert [d.reason.split(":")[0] for d in runtime.platform.local_queue.dead_letters("WorkQueue")] == ["ContractError"]
