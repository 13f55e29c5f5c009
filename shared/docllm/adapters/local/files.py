"""Private files: nothing the local platform writes is readable by another user of the machine.

Directories are 0700 and files 0600, whatever the umask of the process that writes them (the
runtime, or a CLI command such as ``docllm ingest`` uploading blobs): files are *created* with
their mode rather than tightened afterwards, so there is no moment at which another user could
open one. :func:`secure_tree` tightens a data directory an older docllm wrote.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
#: The umask of the runtime process and of local job processes: what they create is theirs alone.
UMASK = 0o077


def private_dir(path: Path) -> Path:
    """``mkdir -p`` whose every newly made level is 0700 (``Path.mkdir(parents=True)`` makes the
    intermediate levels with the umask's mode). Existing directories are left as they are."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=DIR_MODE)
            os.chmod(d, DIR_MODE)  # mkdir's mode passes through the umask
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """``os.open`` that creates ``path`` 0600 (and makes an existing file 0600 too)."""
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)  # the umask took bits off, or the file predates us
    except BaseException:
        os.close(fd)
        raise
    return fd


def touch_private(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist (SQLite gives its ``-wal`` and ``-shm``
    files the mode of the database file, so creating the database 0600 covers them)."""
    if not path.exists():
        private_dir(path.parent)
        os.close(open_private(path, os.O_WRONLY | os.O_CREAT))


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path``, created 0600."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with os.fdopen(open_private(path), "wb") as f:
        f.write(raw)


def secure_tree(root: Path) -> int:
    """Make ``root`` and every directory under it 0700 and every file 0600; returns how many paths
    changed. Symbolic links are neither followed nor changed; paths that vanish meanwhile are skipped."""
    changed = 0
    for dirpath, _dirnames, filenames in os.walk(root):  # each directory is a dirpath once, root first
        targets = [(dirpath, DIR_MODE)] + [(os.path.join(dirpath, n), FILE_MODE) for n in filenames]
        for path, want in targets:
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == want:
                    continue
                os.chmod(path, want)
                changed += 1
            except (FileNotFoundError, PermissionError):
                continue
    return changed
