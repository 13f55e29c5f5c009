"""SQS semantics of the local queue that the contract suite does not pin down."""

from __future__ import annotations

from docllm.adapters.local.queue import QueueConfig, SqliteQueue


def test_backoff_doubles_per_attempt_and_is_capped():
    config = QueueConfig(backoff_base_s=1, backoff_max_s=5)
    assert [config.backoff_s(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_a_failed_message_becomes_visible_again_only_after_its_backoff(tmp_path):
    q = SqliteQueue(tmp_path / "q.db", {"q": QueueConfig(backoff_base_s=30, max_receive_count=5)})
    q.send("q", "x")
    (m,) = q.receive("q")
    q.retry_later("q", m, reason="boom")
    assert q.receive("q") == []
    assert q.stats("q").in_flight == 1 and q.stats("q").delayed == 0


def test_recover_redelivers_in_flight_messages_after_a_crash(tmp_path):
    q = SqliteQueue(tmp_path / "q.db", {"q": QueueConfig(visibility_timeout_s=3600)})
    q.send("q", "x")
    (first,) = q.receive("q")
    assert q.receive("q") == []
    # A new process (the restarted runtime) opens the same file.
    q2 = SqliteQueue(tmp_path / "q.db", {"q": QueueConfig(visibility_timeout_s=3600)})
    assert q2.recover() == 1
    (again,) = q2.receive("q")
    assert again.message_id == first.message_id and again.receive_count == 2


def test_a_message_received_max_times_goes_to_the_dlq_on_its_next_receive(tmp_path):
    q = SqliteQueue(tmp_path / "q.db", {"q": QueueConfig(visibility_timeout_s=0, max_receive_count=2)})
    q.send("q", "x")
    q.receive("q")
    q.receive("q")
    assert q.receive("q") == []
    (dead,) = q.dead_letters("q")
    assert dead.reason == "maxReceiveCount exceeded"


def test_redrive_returns_dead_letters_to_the_queue(tmp_path):
    q = SqliteQueue(tmp_path / "q.db", {"q": QueueConfig(max_receive_count=1, backoff_base_s=0)})
    q.send("q", "x")
    (m,) = q.receive("q")
    q.retry_later("q", m, reason="boom")
    assert q.redrive("q") == 1
    assert [m.body for m in q.receive("q")] == ["x"]
