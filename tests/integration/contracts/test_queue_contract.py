"""Queue contract: the SQLite queue behaves as SQS with a redrive policy (moto stands in for SQS).

Visibility is driven by explicit timeouts of 0 or 30 s and a retry backoff of
0, so both adapters are observed in the same state without sleeping.
"""

from __future__ import annotations

import pytest

from docllm.exceptions import NotFoundError
from docllm.ports.queue import Queue, QueueStats

from .conftest import MAX_RECEIVES, QUEUE


def test_sent_message_is_received_with_its_body_and_counts(queue: Queue) -> None:
    message_id = queue.send(QUEUE, '{"n": 1}')
    (m,) = queue.receive(QUEUE)
    assert (m.message_id, m.body, m.receive_count) == (message_id, '{"n": 1}', 1)
    assert m.sent_at_ms > 0
    assert m.first_received_at_ms is not None


def test_received_message_is_invisible_until_its_timeout(queue: Queue) -> None:
    queue.send(QUEUE, "a")
    assert len(queue.receive(QUEUE)) == 1
    assert queue.receive(QUEUE) == []
    stats = queue.stats(QUEUE)
    assert (stats.visible, stats.in_flight) == (0, 1)


def test_zero_visibility_makes_a_message_receivable_again(queue: Queue) -> None:
    queue.send(QUEUE, "a")
    first = queue.receive(QUEUE, visibility_timeout=0)
    second = queue.receive(QUEUE, visibility_timeout=0)
    assert [m.message_id for m in first] == [m.message_id for m in second]
    assert second[0].receive_count == 2


def test_deleted_message_is_gone(queue: Queue) -> None:
    queue.send(QUEUE, "a")
    (m,) = queue.receive(QUEUE, visibility_timeout=0)
    queue.delete(QUEUE, m.receipt)
    assert queue.receive(QUEUE) == []
    assert queue.stats(QUEUE) == QueueStats(name=QUEUE, visible=0, in_flight=0, delayed=0, dead=0)


def test_max_messages_limits_one_receive(queue: Queue) -> None:
    for i in range(5):
        queue.send(QUEUE, str(i))
    got = queue.receive(QUEUE, max_messages=2)
    assert len(got) == 2
    rest = queue.receive(QUEUE, max_messages=10)
    assert sorted(m.body for m in got + rest) == ["0", "1", "2", "3", "4"]


def test_retried_message_returns_until_max_receives_then_is_dead_with_its_reason(queue: Queue) -> None:
    queue.send(QUEUE, "poison")
    counts = []
    for _ in range(MAX_RECEIVES):
        (m,) = queue.receive(QUEUE)
        counts.append(m.receive_count)
        queue.retry_later(QUEUE, m, reason="PermanentError: unreadable pdf")
    assert counts == list(range(1, MAX_RECEIVES + 1))
    assert queue.receive(QUEUE) == []
    (dead,) = queue.dead_letters(QUEUE)
    assert dead.body == "poison"
    assert dead.reason == "PermanentError: unreadable pdf"
    assert dead.receive_count == MAX_RECEIVES
    assert dead.source_queue == QUEUE
    assert dead.dead_at_ms > 0
    assert queue.stats(QUEUE).dead == 1


def test_message_abandoned_max_receives_times_is_dead(queue: Queue) -> None:
    queue.send(QUEUE, "crashy")
    for _ in range(MAX_RECEIVES):
        assert len(queue.receive(QUEUE, visibility_timeout=0)) == 1
    assert queue.receive(QUEUE, visibility_timeout=0) == []
    (dead,) = queue.dead_letters(QUEUE)
    assert dead.body == "crashy"
    assert dead.reason == "maxReceiveCount exceeded"


def test_dead_letters_are_inspected_without_being_consumed(queue: Queue) -> None:
    for body in ("x", "y"):
        queue.send(QUEUE, body)
    for _ in range(MAX_RECEIVES):
        for m in queue.receive(QUEUE):
            queue.retry_later(QUEUE, m, reason="r")
    first = sorted(d.body for d in queue.dead_letters(QUEUE))
    second = sorted(d.body for d in queue.dead_letters(QUEUE))
    assert first == second == ["x", "y"]
    assert queue.stats(QUEUE).dead == 2
    assert len(queue.dead_letters(QUEUE, limit=1)) == 1


def test_stats_count_visible_in_flight_and_delayed(queue: Queue) -> None:
    for body in ("a", "b", "c"):
        queue.send(QUEUE, body)
    queue.send(QUEUE, "later", delay_seconds=600)
    queue.receive(QUEUE, max_messages=1)
    stats = queue.stats(QUEUE)
    assert (stats.name, stats.visible, stats.in_flight, stats.delayed, stats.dead) == (QUEUE, 2, 1, 1, 0)


def test_unknown_queue_is_not_found(queue: Queue) -> None:
    with pytest.raises(NotFoundError):
        queue.send("no-such-queue", "x")
