"""The local EventBridge: rules from ``template.yaml`` route events into local queues.

Every event put on any bus is appended to an event log (``docllm events
tail`` reads it) together with the queues it was routed to, in the same
transaction as the enqueue: an accepted event is never half-routed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docllm.adapters.local.queue import SqliteQueue
from docllm.adapters.local.sqlite import SqliteFile
from docllm.events.envelope import BusEvent
from docllm.ports.bus import EventBus
from docllm.runtime.patterns import matches
from docllm.runtime.template import RuleSpec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, bus TEXT NOT NULL,
  source TEXT NOT NULL, detail_type TEXT NOT NULL, body TEXT NOT NULL, targets TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class LoggedEvent:
    seq: int
    ts_ms: int
    bus: str
    source: str
    detail_type: str
    body: dict[str, Any]
    targets: list[str]


class EventLog:
    def __init__(self, path: Path) -> None:
        self._db = SqliteFile(path, _SCHEMA)

    def append(self, bus: str, events: Sequence[tuple[BusEvent, list[str]]]) -> None:
        now = int(time.time() * 1000)
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO events (ts_ms, bus, source, detail_type, body, targets) VALUES (?, ?, ?, ?, ?, ?)",
                [(now, bus, e.source, e.detail_type, json.dumps(e.to_wire()), json.dumps(t)) for e, t in events],
            )

    def since(self, seq: int = 0, *, limit: int = 1000) -> list[LoggedEvent]:
        rows = (
            self._db.connection()
            .execute(
                "SELECT seq, ts_ms, bus, source, detail_type, body, targets FROM events WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (seq, limit),
            )
            .fetchall()
        )
        return [LoggedEvent(s, t, b, src, dt, json.loads(body), json.loads(tg)) for s, t, b, src, dt, body, tg in rows]

    def last(self, n: int) -> list[LoggedEvent]:
        row = self._db.connection().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return self.since(max(0, int(row[0]) - n), limit=n)


class LocalEventBus(EventBus):
    """One named bus; ``publish`` matches each event against that bus's rules."""

    def __init__(self, name: str, rules: Sequence[RuleSpec], queue: SqliteQueue, log: EventLog) -> None:
        self.name = name
        self._rules = [r for r in rules if r.bus == name]
        self._queue = queue
        self._log = log

    def publish(self, events: Sequence[BusEvent]) -> None:
        routed: list[tuple[BusEvent, list[str]]] = []
        sends: list[tuple[str, str]] = []
        for event in events:
            wire = event.to_wire()
            body = json.dumps(wire)
            targets = [t for rule in self._rules if matches(rule.pattern, wire) for t in rule.targets]
            routed.append((event, targets))
            sends.extend((t, body) for t in targets)
        # Enqueue first: if the log write fails the event is still delivered (at-least-once).
        if sends:
            self._queue.send_many(sends)
        self._log.append(self.name, routed)
