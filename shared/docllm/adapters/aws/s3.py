"""S3 adapter of :class:`docllm.ports.objects.ObjectStore`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig

from docllm.adapters.aws.errors import AwsNotFoundError, aws_errors
from docllm.exceptions import PermanentError
from docllm.ports.objects import ObjectInfo, ObjectStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024


def _etag(raw: str) -> str:
    # S3 returns the ETag as a quoted HTTP entity tag; the port carries the bare value.
    return raw.strip('"')


def _response_time(response: dict[str, Any]) -> datetime:
    """The server's clock at response time (``Date`` header), else ours.

    PutObject does not return ``LastModified``; the ``Date`` header is the same
    second on S3's clock, which is closer than the client's.
    """
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if date:
        try:
            return parsedate_to_datetime(date).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC).replace(microsecond=0)


# Accessing a version that is a delete marker answers 405 MethodNotAllowed: for a reader, absent.
_READ_OVERRIDES = {"MethodNotAllowed": AwsNotFoundError}


class S3ObjectStore(ObjectStore):
    """Buckets of versioned objects on Amazon S3.

    Parameters
    ----------
    client:
        A boto3 S3 client; one is built on first use when omitted (never at import).
    kms_key_id:
        When set, every write asks for SSE-KMS with this key. Buckets also enforce
        default encryption, so this only pins *which* key.
    multipart_threshold:
        Files at least this large go through the transfer manager (multipart, parallel
        parts); smaller ones are streamed in one PutObject.
    max_concurrency:
        Parallel part uploads/downloads of the transfer manager.

    Examples
    --------
    >>> store = S3ObjectStore()  # doctest: +SKIP
    >>> info = store.put("raw", "s3/index.md", b"# S3", content_type="text/markdown")  # doctest: +SKIP
    >>> store.get("raw", "s3/index.md", version_id=info.version_id)  # doctest: +SKIP
    b'# S3'
    """

    def __init__(
        self,
        client: S3Client | None = None,
        *,
        kms_key_id: str | None = None,
        multipart_threshold: int = 16 * MiB,
        max_concurrency: int = 4,
    ) -> None:
        self._client = client
        self._kms_key_id = kms_key_id
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(5 * MiB, min(multipart_threshold, 64 * MiB)),
            max_concurrency=max_concurrency,
        )

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = boto3.client("s3")
        return self._client

    def _write_args(self, metadata: dict[str, str] | None, content_type: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if metadata:
            args["Metadata"] = dict(metadata)
        if content_type:
            args["ContentType"] = content_type
        if self._kms_key_id:
            args["ServerSideEncryption"] = "aws:kms"
            args["SSEKMSKeyId"] = self._kms_key_id
        return args

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        """Write ``body``; return the new version's ETag (unquoted) and VersionId.

        ``last_modified`` is the response's ``Date`` (S3 does not return
        ``LastModified`` on PutObject); :meth:`head` gives the stored value.
        """
        args = self._write_args(metadata, content_type)
        with aws_errors(f"S3 PutObject s3://{bucket}/{key}"):
            resp = self.client.put_object(Bucket=bucket, Key=key, Body=body, **args)
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=len(body),
            etag=_etag(resp["ETag"]),
            version_id=resp.get("VersionId"),
            last_modified=_response_time(dict(resp)),
            metadata=dict(metadata or {}),
            content_type=content_type,
        )

    def put_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        """Upload a file without holding it in memory.

        Below ``multipart_threshold`` the file handle is streamed in one
        PutObject, whose response names the exact version written. Above it the
        transfer manager uploads parts in parallel and does not return the
        response, so the version is read back with HeadObject: a concurrent
        writer of the same key could be reported instead (keys are written by
        one producer in this platform).
        """
        size = Path(path).stat().st_size
        args = self._write_args(metadata, content_type)
        if size < self._transfer.multipart_threshold:
            with open(path, "rb") as fh, aws_errors(f"S3 PutObject s3://{bucket}/{key}"):
                resp = self.client.put_object(Bucket=bucket, Key=key, Body=fh, **args)
            return ObjectInfo(
                bucket=bucket,
                key=key,
                size=size,
                etag=_etag(resp["ETag"]),
                version_id=resp.get("VersionId"),
                last_modified=_response_time(dict(resp)),
                metadata=dict(metadata or {}),
                content_type=content_type,
            )
        with aws_errors(f"S3 upload s3://{bucket}/{key}"):
            self.client.upload_file(str(path), bucket, key, ExtraArgs=args, Config=self._transfer)
        return self.head(bucket, key)

    def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes:
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        with aws_errors(f"S3 GetObject s3://{bucket}/{key}", overrides=_READ_OVERRIDES):
            resp = self.client.get_object(Bucket=bucket, Key=key, **extra)
            return resp["Body"].read()

    def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        """Bytes ``start``..``end`` inclusive (``Range: bytes=start-end``).

        An ``end`` past the object is cut at its last byte, as HTTP does; a
        ``start`` past it raises :class:`~docllm.exceptions.PermanentError`
        (``InvalidRange``), as does an inverted or negative range (before any call).
        """
        if start < 0 or end < start:
            raise PermanentError(f"invalid byte range bytes={start}-{end}: need 0 <= start <= end")
        with aws_errors(f"S3 GetObject s3://{bucket}/{key} bytes={start}-{end}", overrides=_READ_OVERRIDES):
            resp = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
            return resp["Body"].read()

    def download_file(self, bucket: str, key: str, path: Path) -> None:
        """Download to ``path`` via the transfer manager (ranged parallel GETs).

        The transfer manager writes a temporary file and renames it, so a
        failed download leaves no partial file at ``path``.
        """
        with aws_errors(f"S3 download s3://{bucket}/{key}", overrides=_READ_OVERRIDES):
            self.client.download_file(bucket, key, str(path), Config=self._transfer)

    def head(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        with aws_errors(f"S3 HeadObject s3://{bucket}/{key}", overrides=_READ_OVERRIDES):
            resp = self.client.head_object(Bucket=bucket, Key=key, **extra)
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(resp["ContentLength"]),
            etag=_etag(resp["ETag"]),
            version_id=resp.get("VersionId"),
            last_modified=resp["LastModified"],
            metadata=dict(resp.get("Metadata") or {}),
            content_type=resp.get("ContentType"),
        )

    def delete(self, bucket: str, key: str) -> None:
        """Delete the current version: a delete marker on a versioned bucket.

        Deleting a key that does not exist succeeds, as on S3.
        """
        with aws_errors(f"S3 DeleteObject s3://{bucket}/{key}"):
            self.client.delete_object(Bucket=bucket, Key=key)

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Current versions under ``prefix``, in key (UTF-8 byte) order.

        ListObjectsV2 returns neither version ids nor metadata nor content
        types: those fields are ``None``/empty here; :meth:`head` has them.
        """
        paginator = self.client.get_paginator("list_objects_v2")
        with aws_errors(f"S3 ListObjectsV2 s3://{bucket}/{prefix}"):
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(
                        bucket=bucket,
                        key=obj["Key"],
                        size=int(obj["Size"]),
                        etag=_etag(obj["ETag"]),
                        version_id=None,
                        last_modified=obj["LastModified"],
                    )
