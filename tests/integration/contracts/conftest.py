"""Contract fixtures: every port test runs against the local adapter and the AWS adapter over moto.

The AWS side is configured like the SAM template: a versioned bucket, a
``pk``/``sk`` table, an SQS queue whose RedrivePolicy sends messages to a DLQ
after ``MAX_RECEIVES`` receives. Timing knobs are set so neither side needs
sleeps: retry backoff 0 (a retried message is visible again at once).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from docllm.events.envelope import BusEvent
from docllm.ports.bus import EventBus
from docllm.ports.objects import ObjectStore
from docllm.ports.queue import Queue
from docllm.ports.registry import ModelRegistry
from docllm.ports.state import StateStore
from tests.support.aws import create_state_table

REGION = "eu-west-1"
BUCKET = "contract-bucket"
TABLE = "contract-state"
QUEUE = "work"
MAX_RECEIVES = 3
VISIBILITY_S = 30
STAGE = "test"


class RecordingBus(EventBus):
    """The local registry's bus: keeps what it announces."""

    def __init__(self) -> None:
        self.events: list[BusEvent] = []

    def publish(self, events: object) -> None:
        self.events.extend(events)  # type: ignore[arg-type]


@pytest.fixture
def moto_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An empty moto account with fake credentials (real AWS is never reachable from here)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture(params=["local", "aws"])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        from docllm.adapters.local.objects import LocalObjectStore

        local = LocalObjectStore(tmp_path / "objects")
        local.create_bucket(BUCKET, versioned=True)
        return local
    request.getfixturevalue("moto_account")
    from docllm.adapters.aws.s3 import S3ObjectStore

    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return S3ObjectStore(client)


@pytest.fixture(params=["local", "aws"])
def state_store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    if request.param == "local":
        from docllm.adapters.local.state import SqliteStateStore

        return SqliteStateStore(tmp_path / "state.db")
    request.getfixturevalue("moto_account")
    from docllm.adapters.aws.dynamodb import DynamoStateStore

    client = boto3.client("dynamodb", region_name=REGION)
    create_state_table(client, TABLE)
    return DynamoStateStore(TABLE, client)


@pytest.fixture(params=["local", "aws"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Queue:
    if request.param == "local":
        from docllm.adapters.local.queue import QueueConfig, SqliteQueue

        config = QueueConfig(visibility_timeout_s=VISIBILITY_S, max_receive_count=MAX_RECEIVES, backoff_base_s=0.0)
        return SqliteQueue(tmp_path / "queue.db", {QUEUE: config})
    request.getfixturevalue("moto_account")
    from docllm.adapters.aws.sqs import SqsQueue

    client = boto3.client("sqs", region_name=REGION)
    dlq_url = client.create_queue(QueueName=f"{QUEUE}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client.create_queue(
        QueueName=QUEUE,
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_S),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}),
        },
    )
    return SqsQueue(client=client, backoff_base_s=0)


@pytest.fixture(params=["local", "aws"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    if request.param == "local":
        from docllm.adapters.local.registry import LocalModelRegistry

        return LocalModelRegistry(tmp_path / "registry.db", default_bus=RecordingBus(), stage=STAGE)
    request.getfixturevalue("moto_account")
    from docllm.adapters.aws.sagemaker_registry import SageMakerModelRegistry

    return SageMakerModelRegistry(stage=STAGE, client=boto3.client("sagemaker", region_name=REGION))
