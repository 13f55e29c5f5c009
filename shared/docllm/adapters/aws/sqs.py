"""SQS adapter of :class:`docllm.ports.queue.Queue`."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

from docllm.adapters.aws.errors import aws_errors
from docllm.exceptions import NotFoundError
from docllm.ports.queue import DeadLetter, Message, Queue, QueueStats

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: SQS refuses a visibility timeout above 12 hours.
MAX_VISIBILITY_S = 12 * 3600
MAX_BATCH = 10

# Message attributes this adapter writes when it moves a message to the DLQ itself.
ATTR_REASON = "docllm-dead-reason"
ATTR_SOURCE = "docllm-source-queue"
ATTR_RECEIVE_COUNT = "docllm-receive-count"
ATTR_DEAD_AT = "docllm-dead-at-ms"
#: The id the message had in its source queue (a copy sent to the DLQ gets a new one).
ATTR_MESSAGE_ID = "docllm-message-id"

#: Set on each queue-consuming Lambda function (template.yaml) to the URL of its own
#: queue's DLQ: the function may send there, and needs no other SQS permission to do so.
DEAD_LETTER_QUEUE_ENV = "DOCLLM_DEAD_LETTER_QUEUE"

#: Longest reason kept on a DLQ copy (all attributes count towards SQS's 256 KiB).
MAX_REASON_CHARS = 2000
# What SQS accepts in a String attribute: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
_NOT_SQS_TEXT = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

DEFAULT_DEAD_REASON = "maxReceiveCount exceeded"

_SYSTEM_ATTRIBUTES = [
    "ApproximateReceiveCount",
    "SentTimestamp",
    "ApproximateFirstReceiveTimestamp",
    "DeadLetterQueueSourceArn",
]


@dataclass(frozen=True)
class _Redrive:
    dlq_url: str
    max_receive_count: int


def backoff_seconds(receive_count: int, *, base_s: float, max_s: float) -> int:
    """Visibility delay before the next attempt: ``base * 2**(n-1)``, capped.

    Examples
    --------
    >>> [backoff_seconds(n, base_s=30, max_s=300) for n in (1, 2, 3, 5)]
    [30, 60, 120, 300]
    >>> backoff_seconds(40, base_s=30, max_s=10**9)
    43200
    """
    exponent = max(0, receive_count - 1)
    # Cap the exponent first: 2**n of a large receive count would overflow a float.
    delay = base_s * 2 ** min(exponent, 32)
    return int(min(delay, max_s, MAX_VISIBILITY_S))


class SqsQueue(Queue):
    """Named SQS queues, each with the DLQ of its redrive policy.

    Parameters
    ----------
    queue_urls:
        ``name -> queue URL``; names not listed are resolved with GetQueueUrl
        (once, then cached).
    client:
        A boto3 SQS client; built on first use when omitted.
    backoff_base_s, backoff_max_s:
        :meth:`retry_later` hides a message for ``base * 2**(receives-1)``
        seconds, at most ``backoff_max_s`` (and never above SQS's 12 h).
    peek_visibility_s:
        How long :meth:`dead_letters` hides DLQ messages while it reads them
        (they are made visible again at once afterwards).
    dead_letter_url:
        Where :meth:`dead_letter` sends copies. Defaults to ``$DOCLLM_DEAD_LETTER_QUEUE``
        (the consuming function's own DLQ on Lambda), else the DLQ of the queue's
        redrive policy.

    Examples
    --------
    >>> q = SqsQueue({"ingest": "https://sqs.eu-west-1.amazonaws.com/123456789012/ingest"})  # doctest: +SKIP
    >>> for m in q.receive("ingest"):  # doctest: +SKIP
    ...     q.delete("ingest", m.receipt)
    """

    def __init__(
        self,
        queue_urls: dict[str, str] | None = None,
        client: SQSClient | None = None,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = MAX_VISIBILITY_S,
        peek_visibility_s: int = 30,
        dead_letter_url: str | None = None,
    ) -> None:
        self._urls = dict(queue_urls or {})
        self._dead_letter_url = dead_letter_url
        self._client = client
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._peek_visibility_s = peek_visibility_s
        self._redrive: dict[str, _Redrive | None] = {}

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            self._client = boto3.client("sqs")
        return self._client

    # --- resolution -----------------------------------------------------------------

    def url(self, queue: str) -> str:
        """URL of a queue name (cached GetQueueUrl)."""
        if queue not in self._urls:
            with aws_errors(f"SQS GetQueueUrl {queue}"):
                self._urls[queue] = self.client.get_queue_url(QueueName=queue)["QueueUrl"]
        return self._urls[queue]

    def _redrive_of(self, queue: str) -> _Redrive | None:
        """The queue's DLQ and maxReceiveCount from its RedrivePolicy (cached)."""
        if queue not in self._redrive:
            with aws_errors(f"SQS GetQueueAttributes {queue}"):
                attrs = self.client.get_queue_attributes(
                    QueueUrl=self.url(queue), AttributeNames=["RedrivePolicy"]
                ).get("Attributes", {})
            policy = attrs.get("RedrivePolicy")
            if not policy:
                self._redrive[queue] = None
            else:
                parsed = json.loads(policy)
                arn = parsed["deadLetterTargetArn"]
                # arn:aws:sqs:region:account:name
                _, _, _, _, account, name = arn.split(":", 5)
                with aws_errors(f"SQS GetQueueUrl {name}"):
                    dlq_url = self.client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
                self._redrive[queue] = _Redrive(dlq_url, int(parsed["maxReceiveCount"]))
        return self._redrive[queue]

    # --- port -----------------------------------------------------------------------

    def send(self, queue: str, body: str, *, delay_seconds: int = 0) -> str:
        if not 0 <= delay_seconds <= 900:
            raise ValueError(f"delay_seconds must be within 0..900 (SQS limit), got {delay_seconds}")
        with aws_errors(f"SQS SendMessage {queue}"):
            resp = self.client.send_message(QueueUrl=self.url(queue), MessageBody=body, DelaySeconds=delay_seconds)
        return resp["MessageId"]

    def _receive_raw(
        self,
        url: str,
        what: str,
        max_messages: int,
        visibility_timeout: int | None,
        *,
        until_empty: bool = False,
    ) -> list[dict[str, Any]]:
        """Receive up to ``max_messages`` in calls of at most 10.

        A further call is made only after a full batch (or, with ``until_empty``,
        after any non-empty one): with a short visibility timeout a second call
        could otherwise receive the same message again, bumping its count.
        """
        out: dict[str, dict[str, Any]] = {}
        while len(out) < max_messages:
            want = min(MAX_BATCH, max_messages - len(out))
            args: dict[str, Any] = {
                "QueueUrl": url,
                "MaxNumberOfMessages": want,
                "MessageSystemAttributeNames": _SYSTEM_ATTRIBUTES,
                "MessageAttributeNames": ["All"],
                "WaitTimeSeconds": 0,
            }
            if visibility_timeout is not None:
                args["VisibilityTimeout"] = visibility_timeout
            with aws_errors(f"SQS ReceiveMessage {what}"):
                batch = self.client.receive_message(**args).get("Messages", [])
            new = [m for m in batch if m["MessageId"] not in out]
            for m in new:
                out[m["MessageId"]] = dict(m)
            if not new or (len(batch) < want and not until_empty):
                break
        return list(out.values())

    def receive(self, queue: str, *, max_messages: int = 10, visibility_timeout: int | None = None) -> list[Message]:
        """Up to ``max_messages`` messages (several calls of at most 10), without waiting."""
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        raw = self._receive_raw(self.url(queue), queue, max_messages, visibility_timeout)
        return [_to_message(m) for m in raw]

    def delete(self, queue: str, receipt: str) -> None:
        with aws_errors(f"SQS DeleteMessage {queue}"):
            self.client.delete_message(QueueUrl=self.url(queue), ReceiptHandle=receipt)

    def retry_later(self, queue: str, message: Message, *, reason: str) -> None:
        """Hide the message for a backoff, or move it to the DLQ on its last receive.

        When the message has been received ``maxReceiveCount`` times, SQS would
        move it to the DLQ on the next receive, without a reason. This adapter
        moves it itself so the DLQ copy carries ``reason``: it sends the copy
        first and deletes the original second, so a crash in between leaves a
        duplicate, never a loss.
        """
        redrive = self._redrive_of(queue)
        if redrive is not None and message.receive_count >= redrive.max_receive_count:
            self._send_dead(redrive.dlq_url, queue, message, reason)
            self.delete(queue, message.receipt)
            return
        delay = backoff_seconds(message.receive_count, base_s=self._backoff_base_s, max_s=self._backoff_max_s)
        with aws_errors(f"SQS ChangeMessageVisibility {queue}"):
            self.client.change_message_visibility(
                QueueUrl=self.url(queue), ReceiptHandle=message.receipt, VisibilityTimeout=delay
            )

    def dead_letter(self, queue: str, message: Message, *, reason: str) -> None:
        """Send a copy of ``message`` to the DLQ now, with ``reason``, the source queue
        and the original message id as message attributes.

        The original is left to the consumer to acknowledge (under Lambda: by
        reporting the item a success, so the event source mapping deletes it).
        Only ``SendMessage`` on the DLQ is needed when ``$DOCLLM_DEAD_LETTER_QUEUE``
        (or ``dead_letter_url``) names it; otherwise the redrive policy is read.
        """
        url = self._dead_letter_url or os.environ.get(DEAD_LETTER_QUEUE_ENV)
        if not url:
            redrive = self._redrive_of(queue)
            if redrive is None:
                raise NotFoundError(f"queue {queue!r} has no dead-letter queue (no RedrivePolicy)")
            url = redrive.dlq_url
        self._send_dead(url, queue, message, reason)

    def _send_dead(self, dlq_url: str, queue: str, message: Message, reason: str) -> None:
        attrs = {
            ATTR_REASON: _attribute_text(reason) or DEFAULT_DEAD_REASON,
            ATTR_SOURCE: queue,
            ATTR_RECEIVE_COUNT: str(message.receive_count),
            ATTR_DEAD_AT: str(int(time.time() * 1000)),
            ATTR_MESSAGE_ID: message.message_id,
        }
        with aws_errors(f"SQS SendMessage DLQ of {queue}"):
            self.client.send_message(
                QueueUrl=dlq_url,
                MessageBody=message.body,
                MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()},
            )

    def _depths(self, url: str, what: str) -> dict[str, int]:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        with aws_errors(f"SQS GetQueueAttributes {what}"):
            attrs = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        return {n: int(attrs.get("Attributes", {}).get(n, 0)) for n in names}

    def stats(self, queue: str) -> QueueStats:
        """Approximate depths (SQS counts are eventually consistent, ~1 min on AWS)."""
        depths = self._depths(self.url(queue), queue)
        dead = 0
        redrive = self._redrive_of(queue)
        if redrive is not None:
            dlq = self._depths(redrive.dlq_url, f"DLQ of {queue}")
            # Messages being peeked by dead_letters() are in flight, still dead.
            dead = dlq["ApproximateNumberOfMessages"] + dlq["ApproximateNumberOfMessagesNotVisible"]
        return QueueStats(
            name=queue,
            visible=depths["ApproximateNumberOfMessages"],
            in_flight=depths["ApproximateNumberOfMessagesNotVisible"],
            delayed=depths["ApproximateNumberOfMessagesDelayed"],
            dead=dead,
        )

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """Read the DLQ without consuming it.

        Messages are received with a short visibility timeout (so one pass
        does not see a message twice) and made visible again at once. Each
        peek adds one to the DLQ copy's receive count, so a DLQ must not have
        a redrive policy of its own. SQS samples hosts on receive: with few
        messages a pass may miss some; :meth:`stats` has the count.
        """
        redrive = self._redrive_of(queue)
        if redrive is None:
            return []
        raw = self._receive_raw(redrive.dlq_url, f"DLQ of {queue}", limit, self._peek_visibility_s, until_empty=True)
        try:
            return [_to_dead_letter(m, queue) for m in raw]
        finally:
            self._release(redrive.dlq_url, [m["ReceiptHandle"] for m in raw], queue)

    def _release(self, url: str, receipts: list[str], queue: str) -> None:
        for start in range(0, len(receipts), MAX_BATCH):
            chunk = receipts[start : start + MAX_BATCH]
            with aws_errors(f"SQS ChangeMessageVisibilityBatch DLQ of {queue}"):
                self.client.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0} for i, r in enumerate(chunk)],
                )


def _attribute_text(text: str) -> str:
    r"""``text`` as SQS takes it in a String attribute: characters it refuses become
    U+FFFD, and it is cut to :data:`MAX_REASON_CHARS`.

    >>> _attribute_text("bad \x00 byte") == "bad \ufffd byte"
    True
    """
    text = _NOT_SQS_TEXT.sub("\ufffd", text)
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def _attr(m: dict[str, Any], name: str) -> str | None:
    value = m.get("MessageAttributes", {}).get(name)
    return None if value is None else value.get("StringValue")


def _to_message(m: dict[str, Any]) -> Message:
    sys_attrs = m.get("Attributes", {})
    first = sys_attrs.get("ApproximateFirstReceiveTimestamp")
    return Message(
        message_id=m["MessageId"],
        body=m["Body"],
        receipt=m["ReceiptHandle"],
        receive_count=int(sys_attrs.get("ApproximateReceiveCount", 1)),
        sent_at_ms=int(sys_attrs.get("SentTimestamp", 0)),
        first_received_at_ms=int(first) if first else None,
        attributes={k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items() if "StringValue" in v},
    )


def _to_dead_letter(m: dict[str, Any], queue: str) -> DeadLetter:
    sys_attrs = m.get("Attributes", {})
    count = _attr(m, ATTR_RECEIVE_COUNT)
    dead_at = _attr(m, ATTR_DEAD_AT)
    return DeadLetter(
        message_id=_attr(m, ATTR_MESSAGE_ID) or m["MessageId"],
        body=m["Body"],
        # Without our attribute (SQS redrove it), the DLQ count includes this peek.
        receive_count=int(count) if count else max(1, int(sys_attrs.get("ApproximateReceiveCount", 1)) - 1),
        reason=_attr(m, ATTR_REASON) or DEFAULT_DEAD_REASON,
        source_queue=_attr(m, ATTR_SOURCE) or queue,
        dead_at_ms=int(dead_at) if dead_at else int(sys_attrs.get("SentTimestamp", 0)),
    )
