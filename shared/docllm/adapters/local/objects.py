"""ObjectStore on a directory, with S3 semantics.

Buckets, keys, MD5 ETags, version ids, user metadata and delete markers live
in a SQLite catalog; object bytes live in one file per version, written to a
temporary name and renamed so a reader never sees half an object; every file is created 0600 in
0700 directories, whichever process writes it. Buckets
created with ``notifications=True`` publish the EventBridge "Object Created" /
"Object Deleted" events that S3 sends when EventBridge notifications are on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from docllm.adapters.local.files import open_private, private_dir
from docllm.adapters.local.sqlite import SqliteFile
from docllm.events.envelope import BusEvent
from docllm.exceptions import NotFoundError, PermanentError
from docllm.ports.objects import ObjectInfo, ObjectStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
  name TEXT PRIMARY KEY, versioned INTEGER NOT NULL, notifications INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
  bucket TEXT NOT NULL, key TEXT NOT NULL, version_id TEXT NOT NULL, seq INTEGER NOT NULL,
  size INTEGER NOT NULL, etag TEXT NOT NULL, modified_ms INTEGER NOT NULL,
  metadata TEXT NOT NULL, content_type TEXT, delete_marker INTEGER NOT NULL DEFAULT 0,
  is_latest INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (bucket, key, version_id)
);
CREATE INDEX IF NOT EXISTS versions_latest ON versions (bucket, is_latest, key);
CREATE INDEX IF NOT EXISTS versions_seq ON versions (seq);
"""

Notifier = Callable[[BusEvent], None]
_CHUNK = 1024 * 1024


class LocalObjectStore(ObjectStore):
    def __init__(self, root: Path, *, notify: Notifier | None = None) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        private_dir(self._blobs)
        self._db = SqliteFile(self.root / "catalog.db", _SCHEMA)
        self._notify = notify
        self._seq_lock = threading.Lock()

    # -- buckets -----------------------------------------------------------
    def create_bucket(self, name: str, *, versioned: bool = True, notifications: bool = False) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO buckets (name, versioned, notifications) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET versioned = excluded.versioned, "
                "notifications = excluded.notifications",
                (name, int(versioned), int(notifications)),
            )

    def _bucket(self, name: str) -> tuple[bool, bool]:
        row = (
            self._db.connection()
            .execute("SELECT versioned, notifications FROM buckets WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            raise NotFoundError(f"NoSuchBucket: {name}")
        return bool(row[0]), bool(row[1])

    # -- writes ------------------------------------------------------------
    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        self._bucket(bucket)
        tmp = self._tmp_path()
        with os.fdopen(open_private(tmp), "wb") as f:
            f.write(body)
        return self._commit(bucket, key, tmp, hashlib.md5(body).hexdigest(), len(body), metadata, content_type)

    def put_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        self._bucket(bucket)
        tmp = self._tmp_path()
        digest = hashlib.md5()
        size = 0
        with open(path, "rb") as src, os.fdopen(open_private(tmp), "wb") as dst:
            while block := src.read(_CHUNK):
                digest.update(block)
                dst.write(block)
                size += len(block)
        return self._commit(bucket, key, tmp, digest.hexdigest(), size, metadata, content_type)

    def _tmp_path(self) -> Path:
        return self._blobs / f".tmp-{uuid.uuid4().hex}"

    def _commit(  # noqa: PLR0917 - private; mirrors put()'s arguments one to one
        self,
        bucket: str,
        key: str,
        tmp: Path,
        etag: str,
        size: int,
        metadata: dict[str, str] | None,
        content_type: str | None,
    ) -> ObjectInfo:
        _validate_key(key)
        versioned, notifications = self._bucket(bucket)
        version_id = _new_version_id() if versioned else "null"
        blob = self._blob_path(bucket, key, version_id)
        private_dir(blob.parent)
        # rename is atomic: a killed process leaves the old version or the new one, never half.
        # No fsync: the page cache outlives the process, and power loss is not what the local
        # platform promises to survive (S3 does that part on AWS).
        os.replace(tmp, blob)
        now = int(time.time() * 1000)
        with self._db.transaction() as conn:
            seq = self._next_seq(conn)
            conn.execute("UPDATE versions SET is_latest = 0 WHERE bucket = ? AND key = ?", (bucket, key))
            conn.execute(
                "INSERT OR REPLACE INTO versions (bucket, key, version_id, seq, size, etag, modified_ms, "
                "metadata, content_type, delete_marker, is_latest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1)",
                (bucket, key, version_id, seq, size, etag, now, json.dumps(metadata or {}), content_type),
            )
        info = ObjectInfo(
            bucket=bucket,
            key=key,
            size=size,
            etag=etag,
            version_id=None if version_id == "null" else version_id,
            last_modified=datetime.fromtimestamp(now / 1000, UTC),
            metadata=dict(metadata or {}),
            content_type=content_type,
        )
        if notifications and self._notify is not None:
            self._notify(_s3_event("Object Created", bucket, key, version_id, seq, size=size, etag=etag))
        return info

    def delete(self, bucket: str, key: str) -> None:
        versioned, notifications = self._bucket(bucket)
        now = int(time.time() * 1000)
        with self._db.transaction() as conn:
            current = conn.execute(
                "SELECT version_id, delete_marker FROM versions WHERE bucket = ? AND key = ? AND is_latest = 1",
                (bucket, key),
            ).fetchone()
            if current is None or current[1]:
                return  # S3 answers 204 for a missing key too, and sends no event
            seq = self._next_seq(conn)
            conn.execute("UPDATE versions SET is_latest = 0 WHERE bucket = ? AND key = ?", (bucket, key))
            if versioned:
                marker = _new_version_id()
                conn.execute(
                    "INSERT INTO versions (bucket, key, version_id, seq, size, etag, modified_ms, metadata, "
                    "content_type, delete_marker, is_latest) VALUES (?, ?, ?, ?, 0, '', ?, '{}', NULL, 1, 1)",
                    (bucket, key, marker, seq, now),
                )
            else:
                marker = "null"
                conn.execute("DELETE FROM versions WHERE bucket = ? AND key = ?", (bucket, key))
        if not versioned:
            self._blob_path(bucket, key, "null").unlink(missing_ok=True)
        if notifications and self._notify is not None:
            self._notify(_s3_event("Object Deleted", bucket, key, marker, seq))

    @staticmethod
    def _next_seq(conn: object) -> int:
        row = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM versions").fetchone()  # type: ignore[attr-defined]
        return int(row[0])

    # -- reads -------------------------------------------------------------
    def _row(self, bucket: str, key: str, version_id: str | None) -> tuple[object, ...]:
        self._bucket(bucket)
        conn = self._db.connection()
        if version_id is None:
            row = conn.execute(
                "SELECT version_id, size, etag, modified_ms, metadata, content_type, delete_marker "
                "FROM versions WHERE bucket = ? AND key = ? AND is_latest = 1",
                (bucket, key),
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT version_id, size, etag, modified_ms, metadata, content_type, delete_marker "
                "FROM versions WHERE bucket = ? AND key = ? AND version_id = ?",
                (bucket, key, version_id),
            ).fetchone()
        if row is None or row[6]:
            raise NotFoundError(f"NoSuchKey: s3://{bucket}/{key}" + (f"?versionId={version_id}" if version_id else ""))
        return tuple(row)

    def head(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        vid, size, etag, modified, metadata, content_type, _ = self._row(bucket, key, version_id)
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(size),  # type: ignore[call-overload]
            etag=str(etag),
            version_id=None if vid == "null" else str(vid),
            last_modified=datetime.fromtimestamp(int(modified) / 1000, UTC),  # type: ignore[call-overload]
            metadata=json.loads(str(metadata)),
            content_type=None if content_type is None else str(content_type),
        )

    def _existing_blob(self, bucket: str, key: str, version_id: str | None) -> Path:
        vid = str(self._row(bucket, key, version_id)[0])
        return self._blob_path(bucket, key, vid)

    def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes:
        return self._existing_blob(bucket, key, version_id).read_bytes()

    def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise PermanentError(f"invalid range bytes={start}-{end}")
        with open(self._existing_blob(bucket, key, None), "rb") as f:
            f.seek(start)
            return f.read(end - start + 1)

    def download_file(self, bucket: str, key: str, path: Path) -> None:
        src = self._existing_blob(bucket, key, None)
        private_dir(path.parent)
        with open(src, "rb") as s, os.fdopen(open_private(path), "wb") as d:
            shutil.copyfileobj(s, d, _CHUNK)

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        self._bucket(bucket)
        rows = (
            self._db.connection()
            .execute(
                "SELECT key, version_id, size, etag, modified_ms, metadata, content_type FROM versions "
                "WHERE bucket = ? AND is_latest = 1 AND delete_marker = 0 AND key >= ? AND key < ? ORDER BY key",
                (bucket, prefix, prefix + "\U0010ffff"),
            )
            .fetchall()
        )
        for key, vid, size, etag, modified, metadata, content_type in rows:
            yield ObjectInfo(
                bucket=bucket,
                key=key,
                size=size,
                etag=etag,
                version_id=None if vid == "null" else vid,
                last_modified=datetime.fromtimestamp(modified / 1000, UTC),
                metadata=json.loads(metadata),
                content_type=content_type,
            )

    def _blob_path(self, bucket: str, key: str, version_id: str) -> Path:
        # Hash the key: S3 keys may hold characters, lengths and '..' segments no file system takes.
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self._blobs / bucket / digest[:2] / digest / version_id


def _validate_key(key: str) -> None:
    if not key or len(key.encode("utf-8")) > 1024:
        raise PermanentError(f"object key must be 1..1024 bytes of UTF-8, got {len(key.encode('utf-8'))}")


def _new_version_id() -> str:
    # Sortable by time like S3's opaque ids are not, which makes local debugging easier.
    return f"{time.time_ns():020d}{uuid.uuid4().hex[:12]}"


def _s3_event(
    detail_type: str, bucket: str, key: str, version_id: str, seq: int, *, size: int = 0, etag: str = ""
) -> BusEvent:
    obj: dict[str, object] = {"key": key, "sequencer": f"{seq:018X}"}
    if detail_type == "Object Created":
        obj.update({"size": size, "etag": etag})
    if version_id != "null":
        obj["version-id"] = version_id
    detail: dict[str, object] = {
        "version": "0",
        "bucket": {"name": bucket},
        "object": obj,
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": "000000000000",
        "source-ip-address": "127.0.0.1",
        "reason": "PutObject" if detail_type == "Object Created" else "DeleteObject",
    }
    if detail_type == "Object Deleted":
        detail["deletion-type"] = "Delete Marker Created" if version_id != "null" else "Permanently Deleted"
    return BusEvent(
        source="aws.s3",
        detail_type=detail_type,
        resources=[f"arn:aws:s3:::{bucket}"],
        detail=detail,
    )
