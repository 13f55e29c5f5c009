"""SNS adapter of :class:`docllm.ports.notifier.Notifier`: ``Publish`` to the alarm topic.

The topic is the template's ``AlarmTopic`` (``DOCLLM_ALARM_TOPIC_ARN``), the one the alarms notify too,
so people subscribe once. The subject is cut to SNS's 100 characters; the severity and the
notification's attributes travel as message attributes, which subscriptions can filter on
(e.g. only ``severity = page`` to a pager).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3

from docllm.adapters.aws.errors import aws_errors
from docllm.exceptions import ConfigurationError
from docllm.ports.notifier import Notification, Notifier

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

#: SNS allows 10 message attributes per message.
MAX_ATTRIBUTES = 10


def build_publish_request(topic_arn: str, notification: Notification) -> dict[str, Any]:
    """The ``Publish`` parameters of ``notification`` (pure: checked against the service model in tests).

    >>> note = Notification(subject="s", message="m", severity="page")
    >>> req = build_publish_request("arn:aws:sns:eu-west-1:1:t", note)
    >>> req["Subject"], req["MessageAttributes"]["severity"]
    ('s', {'DataType': 'String', 'StringValue': 'page'})
    """
    attributes = {"severity": notification.severity, **notification.attributes}
    return {
        "TopicArn": topic_arn,
        "Subject": notification.subject,
        "Message": notification.message,
        "MessageAttributes": {
            k: {"DataType": "String", "StringValue": v} for k, v in list(attributes.items())[:MAX_ATTRIBUTES] if v
        },
    }


class SnsNotifier(Notifier):
    """Parameters
    ----------
    topic_arn:
        The topic to publish to; ``None`` makes every notification fail with a ConfigurationError
        (a deployment without the topic is a wiring bug, and the rollback stage must say so).
    client:
        An ``sns`` client; one is created on first use when omitted.
    """

    def __init__(self, topic_arn: str | None, *, client: SNSClient | None = None) -> None:
        self.topic_arn = topic_arn
        self._client = client

    @property
    def client(self) -> SNSClient:
        if self._client is None:
            self._client = boto3.client("sns")
        return self._client

    def notify(self, notification: Notification) -> dict[str, Any]:
        if not self.topic_arn:
            raise ConfigurationError("DOCLLM_ALARM_TOPIC_ARN is not set: nowhere to send notifications")
        with aws_errors(f"SNS Publish {self.topic_arn}"):
            response = self.client.publish(**build_publish_request(self.topic_arn, notification))
        return {"channel": self.topic_arn, "message_id": response["MessageId"]}
