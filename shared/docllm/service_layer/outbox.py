"""The transactional outbox: no state change becomes visible without its event.

A stage that changes state calls :func:`commit` with its writes and the events
that announce them. The events are written to the ``outbox`` partition *in the
same state transaction* (SQLite locally, DynamoDB ``TransactWriteItems`` on
AWS), so either both the change and its events exist or neither does. Then
:func:`commit` publishes them at once and deletes each entry after the bus
accepted it. Whatever that first attempt misses (the bus refused, the process
died) stays in the outbox and a relay publishes it later:

* locally, the runtime's relay thread (:func:`relay`, entries older than a
  grace period, so it rarely races the inline attempt);
* on AWS, ``OutboxRelayFunction`` on the state table's stream (INSERTs of
  ``pk = outbox``, batching window of a few seconds for the same reason),
  which calls :func:`relay_entry` per record.

Delivery is at least once: an entry published but not yet deleted when the
process died is published again. Consumers are idempotent (Powertools
idempotency over the event detail, whose ``revision``/``request_id`` fields
keep distinct changes distinct), so a second copy changes nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from docllm.bootstrap import Platform
from docllm.events.contracts import EventDetail, to_bus
from docllm.events.envelope import BusEvent
from docllm.ports.state import Put, Write

OUTBOX_PK = "outbox"
#: The local relay leaves younger entries to the inline attempt of :func:`commit`.
RELAY_GRACE_S = 2.0

log = logging.getLogger(__name__)


def _entry_key(event: BusEvent) -> str:
    # Time first: the relay publishes oldest first, so one stage's events keep their order.
    return f"{time.time_ns():020d}#{event.id}"


def _entry_age_s(key: str) -> float:
    try:
        return (time.time_ns() - int(key.partition("#")[0])) / 1e9
    except ValueError:
        return float("inf")


def commit(p: Platform, writes: Sequence[Write], events: Sequence[EventDetail | BusEvent] = ()) -> None:
    """Apply ``writes`` and record ``events`` atomically, then try to publish the events.

    A failed publish is logged and left to the relay: the state change stands either way,
    and its events will follow it.
    """
    bus_events = [e if isinstance(e, BusEvent) else to_bus(e) for e in events]
    entries = [Put(OUTBOX_PK, _entry_key(e), {"event": e.to_wire()}) for e in bus_events]
    p.state.transact([*writes, *entries])
    if entries:
        try:
            _publish(p, entries)
        except Exception as e:
            log.warning("outbox: %d event(s) left for the relay: %s: %s", len(entries), type(e).__name__, e)


def _publish(p: Platform, entries: Sequence[Put]) -> None:
    p.bus.publish([BusEvent.model_validate(e.item["event"]) for e in entries])
    for e in entries:
        p.state.delete(e.pk, e.sk)


def pending(p: Platform) -> list[tuple[str, dict[str, Any]]]:
    """``(key, event)`` of every entry not yet published, oldest first."""
    return [(sk, item["event"]) for sk, item in p.state.query(OUTBOX_PK)]


def relay(p: Platform, *, min_age_s: float = 0.0, batch: int = 10) -> int:
    """Publish the outbox's entries older than ``min_age_s``, oldest first; return how many.

    Stops at the first batch the bus refuses (order is kept; the next call resumes there).
    """
    due = [Put(OUTBOX_PK, sk, {"event": ev}) for sk, ev in pending(p) if _entry_age_s(sk) >= min_age_s]
    done = 0
    for i in range(0, len(due), batch):
        _publish(p, due[i : i + batch])
        done += len(due[i : i + batch])
    return done


def relay_entry(p: Platform, key: str) -> bool:
    """Publish one entry if it is still there (the AWS stream relay); True when published now."""
    item = p.state.get(OUTBOX_PK, key)
    if item is None:
        return False  # the inline attempt (or an earlier delivery) published it
    _publish(p, [Put(OUTBOX_PK, key, item)])
    return True


def new_revision() -> str:
    """A record revision: sortable by time, unique across processes."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
