"""Local search adapter: the embedded engine of :mod:`docllm.search.sqlite_index` under the data directory."""

from __future__ import annotations

from pathlib import Path

from docllm.search.sqlite_index import SqliteSearchIndex

__all__ = ["LocalSearchIndex", "open_local_index"]

#: The embedded index is the local adapter; the alias names its role in the adapter table.
LocalSearchIndex = SqliteSearchIndex


def open_local_index(data_dir: Path) -> SqliteSearchIndex:
    """The index of a local platform: ``<data_dir>/search/search.sqlite3``.

    Examples
    --------
    >>> import tempfile
    >>> open_local_index(Path(tempfile.mkdtemp())).path.name
    'search.sqlite3'
    """
    return SqliteSearchIndex(Path(data_dir) / "search")
