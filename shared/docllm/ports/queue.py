"""Durable queue port: SQS with a redrive policy on AWS, SQLite locally.

On AWS the Lambda event source mapping receives and deletes messages; the
port is used there to dead-letter a message that failed for good
(:meth:`Queue.dead_letter`) and to inspect queues (``docllm status``) and dead
letters. Locally the runtime drives handlers through it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Message:
    message_id: str
    body: str
    receipt: str
    receive_count: int
    sent_at_ms: int
    first_received_at_ms: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    body: str
    receive_count: int
    reason: str
    source_queue: str
    dead_at_ms: int


@dataclass(frozen=True)
class QueueStats:
    name: str
    visible: int
    in_flight: int
    delayed: int
    dead: int


class Queue(ABC):
    @abstractmethod
    def send(self, queue: str, body: str, *, delay_seconds: int = 0) -> str: ...

    @abstractmethod
    def receive(
        self, queue: str, *, max_messages: int = 10, visibility_timeout: int | None = None
    ) -> list[Message]: ...

    @abstractmethod
    def delete(self, queue: str, receipt: str) -> None: ...

    @abstractmethod
    def retry_later(self, queue: str, message: Message, *, reason: str) -> None:
        """Give a failed message back: again after a backoff, or to the DLQ when
        it has been received ``max_receive_count`` times."""

    @abstractmethod
    def dead_letter(self, queue: str, message: Message, *, reason: str) -> None:
        """Put a received message in the queue's DLQ now, with ``reason``, whatever its receive count.

        For a failure retrying cannot cure (:class:`~docllm.exceptions.PermanentError`).
        The consumer then acknowledges the message as it does any message it is done
        with (:meth:`delete`, or a success for its batch item under Lambda); the DLQ
        copy stays. ``docllm dlq redrive`` (SQS: a message move task) retries it later.
        """

    @abstractmethod
    def stats(self, queue: str) -> QueueStats: ...

    @abstractmethod
    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """Inspect (without consuming) what the queue's DLQ holds."""
