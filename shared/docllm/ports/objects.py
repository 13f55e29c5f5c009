"""Object store port: S3 on AWS, a directory with S3 semantics locally."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class ObjectInfo:
    """What ``HeadObject`` tells about one object version."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None
    last_modified: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


class ObjectStore(ABC):
    """Buckets of versioned objects.

    Writes to a bucket that has notifications enabled publish the same
    EventBridge "Object Created" / "Object Deleted" events S3 would.
    """

    @abstractmethod
    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo: ...

    @abstractmethod
    def put_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        """Upload a file without holding it in memory."""

    @abstractmethod
    def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes: ...

    @abstractmethod
    def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` inclusive, as an HTTP Range request."""

    @abstractmethod
    def download_file(self, bucket: str, key: str, path: Path) -> None: ...

    @abstractmethod
    def head(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        """Raise :class:`docllm.exceptions.NotFoundError` when absent."""

    @abstractmethod
    def delete(self, bucket: str, key: str) -> None:
        """Delete the current version (a delete marker on a versioned bucket)."""

    @abstractmethod
    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Current versions under ``prefix``, in key order."""


def split_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``.

    >>> split_uri("s3://raw/s3/index.md")
    ('raw', 's3/index.md')
    """
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key
