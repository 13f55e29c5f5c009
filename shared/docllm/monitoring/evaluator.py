"""The local platform's CloudWatch: evaluates the template's alarms on the local metrics and puts
each state change on the local default bus, as CloudWatch puts it on the account's default bus.

:meth:`LocalAlarmEvaluator.tick` evaluates every alarm at ``now`` (``docllm up`` calls it every
``DOCLLM_ALARM_TICK_S``, 1 s by default: CloudWatch evaluates a high-resolution alarm every 10 s
and a standard one every minute; more often here changes nothing but the delay, since a
datapoint counts only once its period has closed). Alarm states live in ``alarms.db`` in the data
directory and survive restarts. A transition is written together with its event in one SQLite
transaction, then the event is published; an event a crash kept from the bus goes out on the next
tick (at least once, as CloudWatch's own delivery: consumers are idempotent).

Per-version instances (local platform only): a serving alarm (``docllm-<stage>-serving-…``) whose
metrics carry a ``Target`` dimension is also evaluated once per model version seen on that target
in its evaluation range, as ``<AlarmName>@<version>`` on the versioned dimension set
(``Family``/``Version`` added), so that a canary's bad version fires its own alarm while the
target's aggregate still looks fine. An instance is evaluated while its version has datapoints in
its range, and after that while it is in ALARM (until its missing data brings it back).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from docllm.adapters.local.sqlite import SqliteFile
from docllm.events.envelope import BusEvent
from docllm.monitoring.alarms import AlarmDefinition, AlarmState, MetricId, period_slots, state_change_event
from docllm.monitoring.definitions import is_serving_alarm
from docllm.ports.bus import EventBus
from docllm.ports.metrics import MetricPoint

if TYPE_CHECKING:
    from docllm.bootstrap import Platform

log = logging.getLogger(__name__)

#: Dimensions that make a versioned metric out of a target's metric.
VERSION_DIMENSIONS = ("Family", "Version")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_state (
  name TEXT PRIMARY KEY, parent TEXT, value TEXT NOT NULL, state TEXT NOT NULL,
  definition TEXT NOT NULL, updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alarm_history (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  previous TEXT NOT NULL, value TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_history_name ON alarm_history (name, seq);
CREATE TABLE IF NOT EXISTS alarm_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);
"""


class MetricSource(Protocol):
    """What the evaluator reads (``SqliteMetrics``)."""

    def datapoints(self, name: str, dimensions: Mapping[str, str], start_ms: int, end_ms: int) -> list[MetricPoint]: ...

    def dimension_sets(self, name: str, start_ms: int, end_ms: int) -> list[dict[str, str]]: ...


@dataclass(frozen=True)
class Transition:
    """One state change the evaluator made (and announced)."""

    alarm: str
    previous: AlarmState
    current: AlarmState
    event: BusEvent


@dataclass(frozen=True)
class AlarmStatus:
    """An alarm's stored state (``docllm alarms``)."""

    name: str
    parent: str | None
    state: AlarmState
    definition: AlarmDefinition


@dataclass(frozen=True)
class HistoryEntry:
    name: str
    timestamp_ms: int
    previous: str
    value: str
    reason: str


class AlarmStore:
    """Alarm states, their history and the events not yet on the bus, in ``alarms.db``."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteFile(path, _SCHEMA)

    def get(self, name: str) -> AlarmStatus | None:
        row = (
            self._db.connection()
            .execute("SELECT name, parent, state, definition FROM alarm_state WHERE name = ?", (name,))
            .fetchone()
        )
        return _status(row) if row else None

    def all(self) -> list[AlarmStatus]:
        rows = (
            self._db.connection()
            .execute("SELECT name, parent, state, definition FROM alarm_state ORDER BY name")
            .fetchall()
        )
        return [_status(r) for r in rows]

    def record(self, definition: AlarmDefinition, previous: AlarmState, current: AlarmState, event: BusEvent) -> None:
        """The new state, its history line and its event: all three or none."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO alarm_state (name, parent, value, state, definition, updated_ms) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET parent = excluded.parent, value = excluded.value, "
                "state = excluded.state, definition = excluded.definition, updated_ms = excluded.updated_ms",
                (
                    definition.name,
                    definition.parent,
                    current.value,
                    current.model_dump_json(),
                    definition.model_dump_json(),
                    int(current.timestamp.timestamp() * 1000),
                ),
            )
            conn.execute(
                "INSERT INTO alarm_history (name, ts_ms, previous, value, reason) VALUES (?, ?, ?, ?, ?)",
                (
                    definition.name,
                    int(current.timestamp.timestamp() * 1000),
                    previous.value,
                    current.value,
                    current.reason,
                ),
            )
            conn.execute("INSERT INTO alarm_events (event) VALUES (?)", (json.dumps(event.to_wire()),))

    def history(self, name: str | None = None, *, limit: int = 100) -> list[HistoryEntry]:
        """State changes, newest first (of one alarm when ``name`` is given)."""
        sql = "SELECT name, ts_ms, previous, value, reason FROM alarm_history"
        args: tuple[Any, ...] = ()
        if name is not None:
            sql += " WHERE name = ?"
            args = (name,)
        rows = self._db.connection().execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [HistoryEntry(*r) for r in rows]

    def pending_events(self) -> list[tuple[int, dict[str, Any]]]:
        rows = self._db.connection().execute("SELECT seq, event FROM alarm_events ORDER BY seq").fetchall()
        return [(seq, json.loads(body)) for seq, body in rows]

    def published(self, seqs: Sequence[int]) -> None:
        with self._db.transaction() as conn:
            conn.executemany("DELETE FROM alarm_events WHERE seq = ?", [(s,) for s in seqs])


def _status(row: tuple[str, str | None, str, str]) -> AlarmStatus:
    name, parent, state, definition = row
    return AlarmStatus(
        name=name,
        parent=parent,
        state=AlarmState.model_validate_json(state),
        definition=AlarmDefinition.model_validate_json(definition),
    )


class LocalAlarmEvaluator:
    """Evaluates ``definitions`` on the local metrics; announces every state change.

    Parameters
    ----------
    p:
        The local platform: its metrics (``p.metrics``), its default bus and its data directory.
        Or give ``metrics``, ``bus`` and ``store`` yourself (tests).
    definitions:
        The alarms (:func:`docllm.monitoring.definitions.local_alarms`).

    Examples
    --------
    >>> evaluator = LocalAlarmEvaluator(p, local_alarms(p).alarms)  # doctest: +SKIP
    >>> [t.alarm for t in evaluator.tick()]  # doctest: +SKIP
    ['docllm-dev-serving-5xx-rate', 'docllm-dev-serving-5xx-rate@tiny-s3-v2']
    """

    def __init__(
        self,
        p: Platform | None,
        definitions: Sequence[AlarmDefinition],
        *,
        metrics: MetricSource | None = None,
        bus: EventBus | None = None,
        store: AlarmStore | None = None,
    ) -> None:
        from docllm.faults import unwrap

        self._p = p
        self.definitions = tuple(definitions)
        if metrics is None or bus is None or store is None:
            if p is None:
                raise ValueError("give a platform, or metrics, bus and store")
            # The local platform's metrics are a SqliteMetrics: it reads as well as it writes.
            metrics = metrics if metrics is not None else cast(MetricSource, p.metrics)
            # CloudWatch's events are AWS's doing, not a side effect of ours: the raw bus, never faulted.
            bus = bus if bus is not None else unwrap(p.default_bus)
            store = store if store is not None else AlarmStore(p.data_dir / "alarms.db")
        self._metrics: MetricSource = metrics
        self._bus: EventBus = bus
        self.store: AlarmStore = store
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> list[Transition]:
        """Evaluate every alarm (and per-version instance) at ``now`` (epoch seconds; default: the clock)."""
        now = time.time() if now is None else now
        with self._lock:  # one evaluation at a time: a transition is decided against the stored state
            flush = getattr(self._metrics, "flush", None)
            if flush is not None:
                flush()  # this process's own metrics (the API's) count up to this instant
            transitions: list[Transition] = []
            for definition in self.definitions:
                for instance in (definition, *self._instances(definition, now)):
                    t = self._evaluate_one(instance, now)
                    if t is not None:
                        transitions.append(t)
            self._publish_pending()
            return transitions

    def states(self) -> list[AlarmStatus]:
        return self.store.all()

    # -- one alarm --------------------------------------------------------------------------------
    def _evaluate_one(self, definition: AlarmDefinition, now: float) -> Transition | None:
        from docllm.monitoring.alarms import evaluate

        stored = self.store.get(definition.name)
        previous = stored.state if stored is not None else AlarmState.initial(now)
        samples = self._samples(definition, now)
        current = evaluate(definition, samples, now, previous=previous)
        if current.value == previous.value:
            return None
        event = state_change_event(definition, previous, current)
        self.store.record(definition, previous, current, event)
        log.info("alarm %s: %s -> %s: %s", definition.name, previous.value, current.value, current.reason)
        return Transition(definition.name, previous, current, event)

    def _window(self, definition: AlarmDefinition, now: float) -> tuple[int, int]:
        slots = period_slots(definition, now)
        return slots[0], slots[-1] + definition.period * 1000

    def _samples(
        self, definition: AlarmDefinition, now: float
    ) -> Sequence[MetricPoint] | Mapping[str, Sequence[MetricPoint]]:
        start, end = self._window(definition, now)

        def read(metric: MetricId, unit: str | None) -> list[MetricPoint]:
            points = self._metrics.datapoints(metric.name, metric.dimensions, start, end)
            return [pt for pt in points if unit is None or pt.unit == unit]

        if definition.metric is not None:
            return read(definition.metric, definition.unit)
        return {
            q.id: read(q.metric_stat.metric, q.metric_stat.unit)
            for q in definition.metrics
            if q.metric_stat is not None
        }

    # -- per-version instances ------------------------------------------------------------------------
    def _instances(self, definition: AlarmDefinition, now: float) -> list[AlarmDefinition]:
        if definition.parent is not None or not is_serving_alarm(definition.name):
            return []
        targeted = [m for m in definition.metric_ids if "Target" in m.dimensions]
        if not targeted:
            return []
        start, end = self._window(definition, now)
        versions: dict[tuple[str, str], None] = {}
        for metric in targeted:
            for dims in self._metrics.dimension_sets(metric.name, start, end):
                extra = {k: v for k, v in dims.items() if k not in metric.dimensions}
                same = all(dims.get(k) == v for k, v in metric.dimensions.items())
                if same and set(extra) == set(VERSION_DIMENSIONS):
                    versions[(extra["Family"], extra["Version"])] = None
        # Instances no longer seen but still in ALARM go on being evaluated: their missing data decides.
        for status in self.store.all():
            if status.parent == definition.name and status.state.value == "ALARM":
                dims = status.definition.metric_ids[0].dimensions
                versions.setdefault((dims.get("Family", ""), dims.get("Version", "")), None)
        return [
            definition.with_dimensions({"Family": family, "Version": version}, name=f"{definition.name}@{version}")
            for family, version in versions
        ]

    # -- the events -----------------------------------------------------------------------------------
    def _publish_pending(self) -> None:
        pending = self.store.pending_events()
        if not pending:
            return
        try:
            self._bus.publish([BusEvent.model_validate(body) for _, body in pending])
        except Exception as e:  # the next tick tries again: the transition stands, its event follows
            log.warning("alarm evaluator: %d state-change event(s) left for the next tick: %s", len(pending), e)
            return
        self.store.published([seq for seq, _ in pending])
