"""Notifier contract: the local log and SNS (over moto) take the same notifications alike; what SNS
delivers to a subscriber is read back through an SQS subscription."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.validate import validate_parameters

from docllm.exceptions import ConfigurationError
from docllm.ports.notifier import MAX_SUBJECT, Notification, Notifier
from tests.integration.contracts.conftest import REGION

LONG = "[docllm dev] rolled back tiny-s3-20250101-0002 on local to tiny-s3-20250101-0001: docllm-dev-serving-5xx-rate"


class _Sns:
    """A topic with an SQS subscriber, to read what SNS delivered."""

    def __init__(self) -> None:
        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.topic = self.sns.create_topic(Name="docllm-test-alarms")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="subscriber")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=arn)

    def delivered(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]


@pytest.fixture(params=["local", "aws"])
def channel(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Notifier, Any]:
    if request.param == "local":
        from docllm.adapters.local.notifier import LocalNotifier

        notifier = LocalNotifier(tmp_path / "data" / "notifications.jsonl")
        return notifier, lambda: [{"Subject": n["subject"], "Message": n["message"], **n} for n in notifier.read()]
    request.getfixturevalue("moto_account")
    from docllm.adapters.aws.sns_notifier import SnsNotifier

    sns = _Sns()
    return SnsNotifier(sns.topic, client=sns.sns), sns.delivered


def test_a_notification_is_delivered_with_a_subject_sns_accepts(channel: tuple[Notifier, Any]) -> None:
    notifier, delivered = channel
    answer = notifier.notify(
        Notification(subject=LONG, message="line one\nline two", severity="page", attributes={"incident_id": "i1"})
    )

    (got,) = delivered()
    assert answer["channel"]
    assert got["Message"] == "line one\nline two"
    assert len(got["Subject"]) <= MAX_SUBJECT and got["Subject"].startswith("[docllm dev] rolled back tiny-s3")


def test_notifications_are_kept_in_order(channel: tuple[Notifier, Any]) -> None:
    notifier, delivered = channel
    for n in range(3):
        notifier.notify(Notification(subject=f"n{n}", message=f"m{n}"))
    assert sorted(d["Message"] for d in delivered()) == ["m0", "m1", "m2"]


def test_the_local_log_is_private_to_the_user(tmp_path: Path) -> None:
    from docllm.adapters.local.notifier import LocalNotifier

    notifier = LocalNotifier(tmp_path / "data" / "notifications.jsonl")
    notifier.notify(Notification(subject="s", message="m"))
    assert stat.S_IMODE(notifier.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(notifier.path.parent.stat().st_mode) == 0o700


def test_sns_without_a_topic_is_a_configuration_error() -> None:
    from docllm.adapters.aws.sns_notifier import SnsNotifier

    with pytest.raises(ConfigurationError):
        SnsNotifier(None, client=object()).notify(Notification(subject="s", message="m"))  # type: ignore[arg-type]


def test_the_publish_request_matches_the_service_model(moto_account: None) -> None:
    from docllm.adapters.aws.sns_notifier import build_publish_request

    client = boto3.client("sns", region_name=REGION)
    attributes = {f"k{i}": f"v{i}" for i in range(15)}
    request = build_publish_request(
        "arn:aws:sns:eu-west-1:123456789012:t", Notification(subject="é" * 300, message="m", attributes=attributes)
    )
    validate_parameters(request, client.meta.service_model.operation_model("Publish").input_shape)
    assert len(request["Subject"]) <= MAX_SUBJECT and request["Subject"].isascii()
    assert (
        len(request["MessageAttributes"]) == 10 and request["MessageAttributes"]["severity"]["StringValue"] == "warning"
    )
