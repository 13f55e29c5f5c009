"""StateStore on SQLite: the local stand-in for the DynamoDB state table."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from docllm.adapters.local.sqlite import SqliteFile
from docllm.exceptions import ConflictError
from docllm.ports.state import Item, Put, StateStore, Write, check_transact

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
  pk TEXT NOT NULL, sk TEXT NOT NULL, body TEXT NOT NULL,
  PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
"""


class SqliteStateStore(StateStore):
    def __init__(self, path: Path) -> None:
        self._db = SqliteFile(path, _SCHEMA)

    def get(self, pk: str, sk: str) -> Item | None:
        row = self._db.connection().execute("SELECT body FROM items WHERE pk = ? AND sk = ?", (pk, sk)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, pk: str, sk: str, item: Item, *, if_absent: bool = False) -> None:
        with self._db.transaction() as conn:
            _put(conn, Put(pk, sk, item, if_absent))

    def delete(self, pk: str, sk: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM items WHERE pk = ? AND sk = ?", (pk, sk))

    def transact(self, writes: Sequence[Write]) -> None:
        check_transact(writes)
        # One SQLite transaction: a ConflictError (or a crash) rolls every write back.
        with self._db.transaction() as conn:
            for w in writes:
                if isinstance(w, Put):
                    _put(conn, w)
                else:
                    conn.execute("DELETE FROM items WHERE pk = ? AND sk = ?", (w.pk, w.sk))

    def query(self, pk: str, sk_prefix: str = "") -> Iterator[tuple[str, Item]]:
        # Materialise first: a generator holding a cursor open across yields would
        # block writers from other threads for as long as the caller iterates.
        rows = (
            self._db.connection()
            .execute(
                "SELECT sk, body FROM items WHERE pk = ? AND sk >= ? AND sk < ? ORDER BY sk",
                (pk, sk_prefix, sk_prefix + "\U0010ffff"),
            )
            .fetchall()
        )
        for sk, body in rows:
            yield sk, dict(json.loads(body))

    def query_page(
        self,
        pk: str,
        sk_prefix: str = "",
        *,
        after: str | None = None,
        limit: int = 50,
        where: Mapping[str, str] | None = None,
        descending: bool = False,
    ) -> list[tuple[str, Item]]:
        # The primary key (pk, sk) orders the rows: a page costs its own rows, not the partition's.
        sql = "SELECT sk, body FROM items WHERE pk = ? AND sk >= ? AND sk < ?"
        args: list[Any] = [pk, sk_prefix, sk_prefix + "\U0010ffff"]
        if after is not None:
            sql += " AND sk < ?" if descending else " AND sk > ?"
            args.append(after)
        for name, value in (where or {}).items():
            sql += " AND CAST(json_extract(body, ?) AS TEXT) = ?"
            args += [_json_path(name), value]
        sql += f" ORDER BY sk {'DESC' if descending else 'ASC'} LIMIT ?"
        args.append(max(0, int(limit)))
        rows = self._db.connection().execute(sql, args).fetchall()
        return [(sk, dict(json.loads(body))) for sk, body in rows]

    def count_by(self, pk: str, fields: Sequence[str]) -> dict[tuple[str, ...], int]:
        # Counted by SQLite itself: no row leaves the database.
        columns = ", ".join("CAST(json_extract(body, ?) AS TEXT)" for _ in fields)
        groups = ", ".join(str(i + 1) for i in range(len(fields)))
        sql = f"SELECT {columns}, COUNT(*) FROM items WHERE pk = ? GROUP BY {groups}"
        rows = self._db.connection().execute(sql, [*(_json_path(f) for f in fields), pk]).fetchall()
        return {tuple("None" if v is None else str(v) for v in row[:-1]): int(row[-1]) for row in rows}


def _json_path(field: str) -> str:
    """The JSON path of a top-level field, quoted so that no field name can change the query's meaning."""
    return '$."' + field.replace('"', "") + '"'


def _put(conn: sqlite3.Connection, w: Put) -> None:
    body = json.dumps(w.item, separators=(",", ":"), default=str)
    if w.if_absent:
        cur = conn.execute(
            "INSERT INTO items (pk, sk, body) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (w.pk, w.sk, body)
        )
        if cur.rowcount == 0:
            raise ConflictError(f"item {w.pk}/{w.sk} already exists")
    else:
        conn.execute("INSERT OR REPLACE INTO items (pk, sk, body) VALUES (?, ?, ?)", (w.pk, w.sk, body))
