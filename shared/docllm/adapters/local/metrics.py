"""MetricsSink on SQLite: what CloudWatch would receive, kept for ``docllm status`` and the local alarms.

Every value is stored with its exact dimension set, ``service`` included as Powertools adds it on
AWS (``{"service": <service>, **dimensions}``: a ``service`` of the caller's own wins), its unit and
its resolution, so that the local alarm evaluator reads the same metric an alarm names on AWS:
CloudWatch treats each dimension set as a metric of its own and never aggregates across them, and
neither does :meth:`SqliteMetrics.datapoints`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from docllm.adapters.local.sqlite import SqliteFile
from docllm.ports.metrics import (
    STANDARD_RESOLUTION,
    MetricPoint,
    MetricsReader,
    MetricsSink,
    check_resolution,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (
  ts_ms INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL, dims TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_name_ts ON metrics (name, ts_ms);
"""
#: Columns added after the first release: a data directory of an older docllm gains them on open.
_ADDED_COLUMNS = {
    "resolution": f"INTEGER NOT NULL DEFAULT {STANDARD_RESOLUTION}",
    "namespace": "TEXT NOT NULL DEFAULT ''",
}


def dimension_key(dimensions: Mapping[str, str]) -> str:
    """The stored form of a dimension set: equal sets, equal keys (exact matching is string equality)."""
    return json.dumps(sorted((str(k), str(v)) for k, v in dimensions.items()))


class SqliteMetrics(MetricsSink, MetricsReader):
    """Metrics of the local platform in ``metrics.db``: the sink, and its reader (:meth:`sums`).

    Parameters
    ----------
    path:
        The SQLite file.
    namespace:
        The CloudWatch namespace these metrics stand for (the platform's, ``"docllm"``).
    service:
        The ``service`` dimension added to every metric, as ``PowertoolsMetrics`` does on AWS.

    Examples
    --------
    >>> sink = SqliteMetrics(tmp / "metrics.db")  # doctest: +SKIP
    >>> sink.put("AskRequests", 1, dimensions={"Target": "local"}, resolution=1)  # doctest: +SKIP
    >>> sink.flush()  # doctest: +SKIP
    >>> sink.datapoints("AskRequests", {"Target": "local", "service": "docllm"}, 0, 2**62)  # doctest: +SKIP
    """

    def __init__(self, path: Path, *, namespace: str = "docllm", service: str = "docllm") -> None:
        self._db = SqliteFile(path, _SCHEMA)
        self._migrate()
        self.namespace = namespace
        self.service = service
        self._pending: list[tuple[int, str, float, str, str, int, str]] = []
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        with self._db.transaction() as conn:  # the write lock: two processes opening at once add each column once
            have = {row[1] for row in conn.execute("PRAGMA table_info(metrics)")}
            for column, decl in _ADDED_COLUMNS.items():
                if column not in have:
                    conn.execute(f"ALTER TABLE metrics ADD COLUMN {column} {decl}")
            conn.execute("CREATE INDEX IF NOT EXISTS metrics_name_dims_ts ON metrics (name, dims, ts_ms)")

    def put(
        self,
        name: str,
        value: float,
        *,
        unit: str = "Count",
        dimensions: dict[str, str] | None = None,
        resolution: int = STANDARD_RESOLUTION,
    ) -> None:
        check_resolution(name, resolution)
        dims = dimension_key({"service": self.service, **(dimensions or {})})
        row = (int(time.time() * 1000), name, float(value), unit, dims, resolution, self.namespace)
        with self._lock:
            self._pending.append(row)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            with self._db.transaction() as conn:
                conn.executemany(
                    "INSERT INTO metrics (ts_ms, name, value, unit, dims, resolution, namespace) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    pending,
                )

    def datapoints(self, name: str, dimensions: Mapping[str, str], start_ms: int, end_ms: int) -> list[MetricPoint]:
        """Raw values of ``name`` on exactly ``dimensions`` (``service`` included) in ``[start_ms, end_ms)``."""
        rows = (
            self._db.connection()
            .execute(
                "SELECT ts_ms, name, value, unit, dims, resolution FROM metrics "
                "WHERE name = ? AND dims = ? AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms",
                (name, dimension_key(dimensions), start_ms, end_ms),
            )
            .fetchall()
        )
        return [_point(row) for row in rows]

    def dimension_sets(self, name: str, start_ms: int, end_ms: int) -> list[dict[str, str]]:
        """Every dimension set ``name`` has values on in ``[start_ms, end_ms)``."""
        rows = (
            self._db.connection()
            .execute(
                "SELECT DISTINCT dims FROM metrics WHERE name = ? AND ts_ms >= ? AND ts_ms < ? ORDER BY dims",
                (name, start_ms, end_ms),
            )
            .fetchall()
        )
        return [{str(k): str(v) for k, v in json.loads(dims)} for (dims,) in rows]

    def sums(
        self,
        name: str,
        dimension_name: str,
        *,
        fixed: dict[str, str],
        start: datetime,
        end: datetime,
    ) -> dict[str, float]:
        """:meth:`docllm.ports.metrics.MetricsReader.sums`: over the stored dimension sets that are exactly
        ``fixed`` (with this sink's ``service`` unless ``fixed`` names one) plus ``dimension_name``."""
        wanted = {"service": self.service, **fixed}
        rows = (
            self._db.connection()
            .execute(
                "SELECT dims, SUM(value) FROM metrics WHERE name = ? AND ts_ms >= ? AND ts_ms < ? GROUP BY dims",
                (name, _epoch_ms(start), _epoch_ms(end)),
            )
            .fetchall()
        )
        totals: dict[str, float] = {}
        for dims, total in rows:
            found = {str(k): str(v) for k, v in json.loads(dims)}
            value = found.pop(dimension_name, None)
            if value is not None and found == wanted:
                totals[value] = totals.get(value, 0.0) + float(total)
        return totals

    def query(self, name: str, *, since_ms: int = 0) -> list[MetricPoint]:
        """Every value of ``name`` since ``since_ms``, on any dimension set."""
        rows = (
            self._db.connection()
            .execute(
                "SELECT ts_ms, name, value, unit, dims, resolution FROM metrics WHERE name = ? AND ts_ms >= ? "
                "ORDER BY ts_ms",
                (name, since_ms),
            )
            .fetchall()
        )
        return [_point(row) for row in rows]

    def totals(self, *, since_ms: int = 0) -> dict[str, float]:
        rows = (
            self._db.connection()
            .execute("SELECT name, SUM(value) FROM metrics WHERE ts_ms >= ? GROUP BY name ORDER BY name", (since_ms,))
            .fetchall()
        )
        return {name: total for name, total in rows}


def _epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch (a naive ``datetime`` is taken as UTC, as CloudWatch does)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _point(row: tuple[int, str, float, str, str, int]) -> MetricPoint:
    ts, name, value, unit, dims, resolution = row
    return MetricPoint(
        name=name,
        value=value,
        unit=unit,
        dimensions=tuple((str(k), str(v)) for k, v in json.loads(dims)),
        timestamp_ms=ts,
        resolution=resolution,
    )
