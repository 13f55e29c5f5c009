"""One way to open SQLite for every local adapter.

WAL lets the CLI read while ``docllm up`` writes; a busy timeout turns
short lock waits into waits instead of errors; connections are per thread
because sqlite3 connections must not cross threads. The database is created 0600 in a 0700
directory before SQLite opens it, and SQLite gives its ``-wal``/``-shm`` files the same mode.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from docllm.adapters.local.files import touch_private


class SqliteFile:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        touch_private(self.path)
        self._schema = schema
        self._local = threading.local()
        # executescript commits on its own, so it cannot run inside transaction().
        self.connection().executescript(schema)

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: take the write lock up front so read-modify-write is atomic."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
