"""Queue on SQLite: SQS semantics (visibility timeout, receive counts, redrive to a DLQ).

A message is *ready*, *in flight* (received, invisible until its deadline) or
*dead* (in the queue's DLQ, with the reason). Every state change is one
``BEGIN IMMEDIATE`` transaction, so a crash at any point leaves each message
in exactly one state; :meth:`SqliteQueue.recover` makes in-flight messages
visible again when the runtime restarts, which is how nothing accepted is lost.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from docllm.adapters.local.sqlite import SqliteFile
from docllm.exceptions import NotFoundError
from docllm.ports.queue import DeadLetter, Message, Queue, QueueStats

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY,
  queue TEXT NOT NULL,
  body TEXT NOT NULL,
  sent_ms INTEGER NOT NULL,
  visible_at_ms INTEGER NOT NULL,
  receive_count INTEGER NOT NULL DEFAULT 0,
  first_received_ms INTEGER,
  receipt TEXT,
  state TEXT NOT NULL DEFAULT 'ready',
  reason TEXT,
  dead_ms INTEGER
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, state, visible_at_ms);
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class QueueConfig:
    """What the template's ``AWS::SQS::Queue`` says, plus the local retry backoff."""

    visibility_timeout_s: int = 30
    max_receive_count: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0

    def backoff_s(self, receive_count: int) -> float:
        """Exponential: base, 2·base, 4·base… capped (SQS itself has no backoff; we add it via visibility)."""
        return float(min(self.backoff_max_s, self.backoff_base_s * (2 ** max(0, receive_count - 1))))


class SqliteQueue(Queue):
    def __init__(self, path: Path, queues: dict[str, QueueConfig]) -> None:
        self._db = SqliteFile(path, _SCHEMA)
        self.queues = dict(queues)

    def _config(self, queue: str) -> QueueConfig:
        try:
            return self.queues[queue]
        except KeyError as e:
            raise NotFoundError(f"no queue named {queue!r}") from e

    def send(self, queue: str, body: str, *, delay_seconds: int = 0) -> str:
        self._config(queue)
        message_id = str(uuid.uuid4())
        now = _now_ms()
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO messages (id, queue, body, sent_ms, visible_at_ms) VALUES (?, ?, ?, ?, ?)",
                (message_id, queue, body, now, now + delay_seconds * 1000),
            )
        return message_id

    def send_many(self, items: list[tuple[str, str]]) -> None:
        """Enqueue ``(queue, body)`` pairs in one transaction (the bus fans out with this)."""
        now = _now_ms()
        rows = []
        for queue, body in items:
            self._config(queue)
            rows.append((str(uuid.uuid4()), queue, body, now, now))
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO messages (id, queue, body, sent_ms, visible_at_ms) VALUES (?, ?, ?, ?, ?)", rows
            )

    def receive(self, queue: str, *, max_messages: int = 10, visibility_timeout: int | None = None) -> list[Message]:
        config = self._config(queue)
        visibility_ms = (config.visibility_timeout_s if visibility_timeout is None else visibility_timeout) * 1000
        now = _now_ms()
        out: list[Message] = []
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT id, body, sent_ms, receive_count, first_received_ms FROM messages "
                "WHERE queue = ? AND state IN ('ready', 'inflight') AND visible_at_ms <= ? "
                "ORDER BY visible_at_ms, sent_ms LIMIT ?",
                (queue, now, max_messages),
            ).fetchall()
            for message_id, body, sent_ms, count, first_seen in rows:
                if count >= config.max_receive_count:
                    # As SQS does: a message received maxReceiveCount times moves to the DLQ
                    # when it becomes visible again instead of being delivered once more.
                    conn.execute(
                        "UPDATE messages SET state = 'dead', dead_ms = ?, "
                        "reason = COALESCE(reason, 'maxReceiveCount exceeded') WHERE id = ?",
                        (now, message_id),
                    )
                    continue
                receipt = str(uuid.uuid4())
                first = first_seen or now
                conn.execute(
                    "UPDATE messages SET state = 'inflight', receipt = ?, receive_count = ?, "
                    "first_received_ms = ?, visible_at_ms = ? WHERE id = ?",
                    (receipt, count + 1, first, now + visibility_ms, message_id),
                )
                out.append(
                    Message(
                        message_id=message_id,
                        body=body,
                        receipt=receipt,
                        receive_count=count + 1,
                        sent_at_ms=sent_ms,
                        first_received_at_ms=first,
                    )
                )
        return out

    def delete(self, queue: str, receipt: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM messages WHERE queue = ? AND receipt = ?", (queue, receipt))

    def retry_later(self, queue: str, message: Message, *, reason: str) -> None:
        config = self._config(queue)
        now = _now_ms()
        with self._db.transaction() as conn:
            if message.receive_count >= config.max_receive_count:
                conn.execute(
                    "UPDATE messages SET state = 'dead', dead_ms = ?, reason = ? WHERE queue = ? AND receipt = ?",
                    (now, reason, queue, message.receipt),
                )
            else:
                delay_ms = int(config.backoff_s(message.receive_count) * 1000)
                conn.execute(
                    "UPDATE messages SET state = 'ready', visible_at_ms = ?, reason = ? "
                    "WHERE queue = ? AND receipt = ?",
                    (now + delay_ms, reason, queue, message.receipt),
                )

    def dead_letter(self, queue: str, message: Message, *, reason: str) -> None:
        """Mark the message dead now. Its receipt is dropped, so the consumer's
        :meth:`delete` that follows is a no-op; a stale receipt changes nothing."""
        self._config(queue)
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE messages SET state = 'dead', dead_ms = ?, reason = ?, receipt = NULL "
                "WHERE queue = ? AND receipt = ? AND state = 'inflight'",
                (_now_ms(), reason, queue, message.receipt),
            )

    def recover(self) -> int:
        """Make every in-flight message visible now; call when no consumer can still hold one."""
        with self._db.transaction() as conn:
            cur = conn.execute(
                "UPDATE messages SET state = 'ready', visible_at_ms = ? WHERE state = 'inflight'", (_now_ms(),)
            )
            return cur.rowcount

    def stats(self, queue: str) -> QueueStats:
        self._config(queue)
        now = _now_ms()
        row = (
            self._db.connection()
            .execute(
                "SELECT "
                "SUM(state IN ('ready','inflight') AND visible_at_ms <= ?), "
                # As SQS counts them: a message waiting out a retry backoff is NotVisible (in flight);
                # only a message sent with a delay that was never received is Delayed.
                "SUM(visible_at_ms > ? AND (state = 'inflight' OR (state = 'ready' AND receive_count > 0))), "
                "SUM(state = 'ready' AND receive_count = 0 AND visible_at_ms > ?), "
                "SUM(state = 'dead') FROM messages WHERE queue = ?",
                (now, now, now, queue),
            )
            .fetchone()
        )
        visible, in_flight, delayed, dead = (int(v or 0) for v in row)
        return QueueStats(name=queue, visible=visible, in_flight=in_flight, delayed=delayed, dead=dead)

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        rows = (
            self._db.connection()
            .execute(
                "SELECT id, body, receive_count, reason, dead_ms FROM messages "
                "WHERE queue = ? AND state = 'dead' ORDER BY dead_ms LIMIT ?",
                (queue, limit),
            )
            .fetchall()
        )
        return [
            DeadLetter(message_id=i, body=b, receive_count=c, reason=r or "", source_queue=queue, dead_at_ms=d)
            for i, b, c, r, d in rows
        ]

    def redrive(self, queue: str) -> int:
        """Move a queue's dead letters back for another try (``docllm dlq redrive``)."""
        with self._db.transaction() as conn:
            cur = conn.execute(
                "UPDATE messages SET state = 'ready', receive_count = 0, visible_at_ms = ?, reason = NULL "
                "WHERE queue = ? AND state = 'dead'",
                (_now_ms(), queue),
            )
            return cur.rowcount

    def purge_dead(self, queue: str) -> int:
        """Delete a queue's dead letters for good (``docllm dlq purge``); returns how many."""
        self._config(queue)
        with self._db.transaction() as conn:
            cur = conn.execute("DELETE FROM messages WHERE queue = ? AND state = 'dead'", (queue,))
            return cur.rowcount
