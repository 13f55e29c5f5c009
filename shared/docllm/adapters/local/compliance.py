"""Local :class:`~docllm.ports.compliance.ComplianceStore`: an append-only directory.

Each key is a file under ``root`` (0700). A write goes to a temporary file, is flushed and made
read-only (0444), then published under its final name with ``os.link``, which fails when the
name exists: a crash leaves a stray temporary file at worst, never half a manifest under a
final name, and nothing ever replaces a published file. Read-only files do not stop the owner
of the directory from deleting them; the local store promises no more than the file system
can (S3 Object Lock in compliance mode is what holds on AWS), and verification is what notices
a removed or altered entry.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from docllm.adapters.local.files import open_private, private_dir
from docllm.exceptions import ConflictError, NotFoundError, PermanentError
from docllm.ports.compliance import ComplianceStore

_TMP = ".tmp"
READ_ONLY = 0o444


class AppendOnlyStore(ComplianceStore):
    """Write-once files under ``root``.

    Examples
    --------
    >>> store = AppendOnlyStore(Path(".docllm/compliance"))  # doctest: +SKIP
    >>> store.put_once("manifests/tiny-s3/00000001.json", b"{}")  # doctest: +SKIP
    'file:///…/.docllm/compliance/manifests/tiny-s3/00000001.json'
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") or p.startswith(_TMP) for p in parts):
            raise PermanentError(f"not a compliance store key: {key!r}")
        return self.root.joinpath(*parts)

    def uri(self, key: str) -> str:
        return self._path(key).resolve().as_uri()

    def put_once(self, key: str, body: bytes) -> str:
        final = self._path(key)
        if final.exists():
            raise ConflictError(f"{key} is already stored (write-once)")
        tmp_dir = private_dir(self.root / _TMP)
        private_dir(final.parent)
        tmp = tmp_dir / uuid.uuid4().hex
        fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())  # a manifest is a record kept for years: on disk before it is published
            os.chmod(tmp, READ_ONLY)
            try:
                os.link(tmp, final)
            except FileExistsError as e:
                raise ConflictError(f"{key} is already stored (write-once)") from e
        finally:
            tmp.unlink(missing_ok=True)
        return final.resolve().as_uri()

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise NotFoundError(f"{key}: not in the compliance store") from e

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(_TMP)]
            rel = Path(dirpath).relative_to(self.root)
            for name in filenames:
                key = (rel / name).as_posix() if rel.parts else name
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)
