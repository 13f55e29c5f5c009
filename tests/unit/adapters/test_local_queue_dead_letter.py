"""SqliteQueue.dead_letter: a message that failed for good goes to the DLQ at once, with its reason."""

from __future__ import annotations

from docllm.adapters.local.queue import QueueConfig, SqliteQueue


def make(tmp_path) -> SqliteQueue:
    return SqliteQueue(tmp_path / "q.db", {"q": QueueConfig(visibility_timeout_s=0, max_receive_count=5)})


def test_dead_letter_moves_a_received_message_to_the_dlq_on_its_first_receive(tmp_path):
    q = make(tmp_path)
    q.send("q", "poison")
    (m,) = q.receive("q")
    q.dead_letter("q", m, reason="ContractError: not an event")
    # The consumer then acknowledges it as it does every message it is done with: a no-op here.
    q.delete("q", m.receipt)
    assert q.receive("q") == []
    (dead,) = q.dead_letters("q")
    assert (dead.message_id, dead.body, dead.receive_count) == (m.message_id, "poison", 1)
    assert dead.reason == "ContractError: not an event" and dead.source_queue == "q"
    assert q.stats("q").dead == 1 and q.stats("q").in_flight == 0


def test_a_dead_lettered_message_can_be_redriven(tmp_path):
    q = make(tmp_path)
    q.send("q", "x")
    (m,) = q.receive("q")
    q.dead_letter("q", m, reason="PermanentError: later")
    q.delete("q", m.receipt)
    assert q.redrive("q") == 1
    (again,) = q.receive("q")
    assert again.message_id == m.message_id and again.receive_count == 1
    assert q.dead_letters("q") == []


def test_dead_letter_with_a_stale_receipt_changes_nothing(tmp_path):
    q = make(tmp_path)
    q.send("q", "x")
    (first,) = q.receive("q")
    (second,) = q.receive("q")  # visibility 0: received again, the first receipt is stale
    q.dead_letter("q", first, reason="late")
    assert q.dead_letters("q") == []
    q.delete("q", second.receipt)
    assert q.stats("q").dead == 0
