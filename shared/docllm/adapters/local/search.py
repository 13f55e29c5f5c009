"""Local search adapter: the embedded engine of :mod:`docllm.search.sqlite_index` under the data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docllm.adapters.local.files import touch_private
from docllm.search.sqlite_index import DB_FILE, SqliteSearchIndex

__all__ = ["LocalSearchIndex", "open_local_index"]


class LocalSearchIndex(SqliteSearchIndex):
    """The embedded index as the local adapter: its directory 0700 and its database (hence its
    ``-wal``/``-shm`` files) 0600, created so before SQLite opens them."""

    def __init__(self, directory: Path, **options: Any) -> None:
        touch_private(Path(directory) / DB_FILE)
        super().__init__(directory, **options)


def open_local_index(data_dir: Path) -> LocalSearchIndex:
    """The index of a local platform: ``<data_dir>/search/search.sqlite3``.

    Examples
    --------
    >>> import tempfile
    >>> open_local_index(Path(tempfile.mkdtemp())).path.name
    'search.sqlite3'
    """
    return LocalSearchIndex(Path(data_dir) / "search")
