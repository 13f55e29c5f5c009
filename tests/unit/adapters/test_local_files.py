"""Private files of the local adapters (issue 13): created 0600 in 0700 directories whatever the
writer's umask, and an older tree tightened without following links out of it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from docllm.adapters.local.files import open_private, private_dir, secure_tree, write_private
from docllm.adapters.local.objects import LocalObjectStore
from docllm.adapters.local.search import LocalSearchIndex
from docllm.adapters.local.sqlite import SqliteFile


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask many users have: group and others may read what is created."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_private_dir_makes_every_new_level_0700(tmp_path: Path, loose_umask: None) -> None:
    private_dir(tmp_path / "a" / "b" / "c")
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3


def test_open_private_creates_0600_and_tightens_an_existing_file(tmp_path: Path, loose_umask: None) -> None:
    write_private(tmp_path / "new", "x")
    old = tmp_path / "old"
    old.write_text("y")
    old.chmod(0o644)
    os.close(open_private(old, os.O_RDONLY))
    assert (mode(tmp_path / "new"), mode(old)) == (0o600, 0o600)


def test_sqlite_databases_and_their_wal_and_shm_files_are_0600(tmp_path: Path, loose_umask: None) -> None:
    db = SqliteFile(tmp_path / "d" / "x.db", "CREATE TABLE IF NOT EXISTS t (x);")
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    files = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert files == ["x.db", "x.db-shm", "x.db-wal"]
    assert {mode(tmp_path / "d" / f) for f in files} == {0o600} and mode(tmp_path / "d") == 0o700


def test_the_search_index_is_private(tmp_path: Path, loose_umask: None) -> None:
    LocalSearchIndex(tmp_path / "search")
    assert mode(tmp_path / "search") == 0o700
    assert {mode(p) for p in (tmp_path / "search").iterdir()} == {0o600}


def test_blobs_written_and_downloaded_are_private(tmp_path: Path, loose_umask: None) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.create_bucket("b")
    src = tmp_path / "src.txt"
    src.write_text("file")
    store.put("b", "k/one", b"bytes")
    store.put_file("b", "k/two", src)
    store.download_file("b", "k/two", tmp_path / "out" / "deep" / "two")
    tree = [*(tmp_path / "objects").rglob("*"), tmp_path / "out", tmp_path / "out" / "deep"]
    assert {(p.is_dir(), mode(p)) for p in tree} == {(True, 0o700), (False, 0o600)}
    assert mode(tmp_path / "out" / "deep" / "two") == 0o600


def test_secure_tree_tightens_everything_and_follows_no_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours to change")
    outside.chmod(0o644)
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    root.chmod(0o755)
    (root / "sub").chmod(0o755)
    (root / "sub" / "f").write_text("f")
    (root / "sub" / "f").chmod(0o664)
    (root / "link").symlink_to(outside)
    (root / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    tmp_mode = mode(tmp_path)
    assert secure_tree(root) == 3
    assert (mode(root), mode(root / "sub"), mode(root / "sub" / "f")) == (0o700, 0o700, 0o600)
    assert (mode(outside), mode(tmp_path)) == (0o644, tmp_mode)  # links lead out: not followed
    assert secure_tree(root) == 0
