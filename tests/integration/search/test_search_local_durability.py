"""The embedded index under crashes, restarts, reader threads and a second process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from docllm.ports.search import IndexedChunk
from docllm.search.sqlite_index import SqliteSearchIndex


def doc(doc_key: str, version: str, n: int) -> list[IndexedChunk]:
    # Every chunk carries the version word, so a mixed result is detectable.
    return [
        IndexedChunk(
            chunk_id=f"{doc_key}#{i}",
            doc_key=doc_key,
            service="s3",
            title="T",
            heading_path=[],
            text=f"marker {version} part {i}",
        )
        for i in range(n)
    ]


def test_index_survives_reopening(tmp_path: Path) -> None:
    first = SqliteSearchIndex(tmp_path)
    first.replace_document("s3/a.md", "v1", doc("s3/a.md", "alpha", 3))
    first.close()
    again = SqliteSearchIndex(tmp_path)
    assert again.document_versions() == {"s3/a.md": "v1"}
    assert len(again.search("alpha", k=10)) == 3


def test_crash_in_the_middle_of_a_replace_leaves_the_old_document(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path)
    index.replace_document("s3/a.md", "v1", doc("s3/a.md", "alpha", 3))
    index.close()
    # The child process dies (os._exit, no rollback, no close) after inserting
    # half of the new chunks inside the replace transaction.
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from docllm.ports.search import IndexedChunk
        from docllm.search import sqlite_index as m
        real_insert = m.SqliteSearchIndex._insert
        def dying_insert(conn, doc_key, version, analyzed, *rest):
            real_insert(conn, doc_key, version, analyzed[:2], *rest)
            os._exit(9)
        m.SqliteSearchIndex._insert = staticmethod(dying_insert)
        idx = m.SqliteSearchIndex(Path({str(tmp_path)!r}))
        chunks = [IndexedChunk(chunk_id=f"s3/a.md#{{i}}", doc_key="s3/a.md", service="s3", title="T",
                               heading_path=[], text="marker beta") for i in range(4)]
        idx.replace_document("s3/a.md", "v2", chunks)
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == 9
    reopened = SqliteSearchIndex(tmp_path)
    assert reopened.document_versions() == {"s3/a.md": "v1"}
    assert {h.text for h in reopened.search("marker", k=10)} == {f"marker alpha part {i}" for i in range(3)}
    assert reopened.chunk_ids("s3/a.md") == [f"s3/a.md#{i}" for i in range(3)]


def test_readers_never_see_a_document_half_old_half_new(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path, durable=False)
    index.replace_document("s3/a.md", "v0", doc("s3/a.md", "v0", 6))
    seen_mixed: list[set[str]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            texts = {h.text.split()[1] for h in index.search("marker", k=20)}
            if len(texts) != 1:
                seen_mixed.append(texts)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for v in range(1, 30):
        index.replace_document("s3/a.md", f"v{v}", doc("s3/a.md", f"v{v}", 6))
    stop.set()
    for t in threads:
        t.join()
    assert seen_mixed == []
    assert {h.text.split()[1] for h in index.search("marker", k=20)} == {"v29"}


def test_a_second_process_sees_writes_made_after_it_opened(tmp_path: Path) -> None:
    reader = SqliteSearchIndex(tmp_path)
    assert reader.search("alpha", k=5) == []  # loads the (empty) scorer
    script = textwrap.dedent(f"""
        from pathlib import Path
        from docllm.ports.search import IndexedChunk
        from docllm.search.sqlite_index import SqliteSearchIndex
        idx = SqliteSearchIndex(Path({str(tmp_path)!r}))
        idx.replace_document("s3/a.md", "v1", [IndexedChunk(chunk_id="c", doc_key="s3/a.md", service="s3",
                             title="T", heading_path=[], text="alpha")])
        idx.replace_document("s3/b.md", "v1", [IndexedChunk(chunk_id="d", doc_key="s3/b.md", service="s3",
                             title="T", heading_path=[], text="alpha beta")])
        idx.delete_document("s3/b.md")
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    assert [h.chunk_id for h in reader.search("alpha", k=5)] == ["c"]
    assert reader.document_versions() == {"s3/a.md": "v1"}
