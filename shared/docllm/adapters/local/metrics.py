"""MetricsSink on SQLite: what CloudWatch would receive, kept for ``docllm status``."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from docllm.adapters.local.sqlite import SqliteFile
from docllm.ports.metrics import MetricPoint, MetricsSink

_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (
  ts_ms INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL, dims TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_name_ts ON metrics (name, ts_ms);
"""


class SqliteMetrics(MetricsSink):
    def __init__(self, path: Path) -> None:
        self._db = SqliteFile(path, _SCHEMA)
        self._pending: list[tuple[int, str, float, str, str]] = []
        self._lock = threading.Lock()

    def put(self, name: str, value: float, *, unit: str = "Count", dimensions: dict[str, str] | None = None) -> None:
        dims = json.dumps(sorted((dimensions or {}).items()))
        with self._lock:
            self._pending.append((int(time.time() * 1000), name, float(value), unit, dims))

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            with self._db.transaction() as conn:
                conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", pending)

    def query(self, name: str, *, since_ms: int = 0) -> list[MetricPoint]:
        rows = (
            self._db.connection()
            .execute(
                "SELECT ts_ms, name, value, unit, dims FROM metrics WHERE name = ? AND ts_ms >= ? ORDER BY ts_ms",
                (name, since_ms),
            )
            .fetchall()
        )
        return [
            MetricPoint(name=n, value=v, unit=u, dimensions=tuple(tuple(d) for d in json.loads(dims)), timestamp_ms=ts)
            for ts, n, v, u, dims in rows
        ]

    def totals(self, *, since_ms: int = 0) -> dict[str, float]:
        rows = (
            self._db.connection()
            .execute("SELECT name, SUM(value) FROM metrics WHERE ts_ms >= ? GROUP BY name ORDER BY name", (since_ms,))
            .fetchall()
        )
        return {name: total for name, total in rows}
