"""AWS :class:`~docllm.ports.compliance.ComplianceStore`: a bucket with S3 Object Lock.

Each manifest is one ``PutObject`` that is write-once twice over:

* ``If-None-Match: *`` (an S3 conditional write) makes S3 refuse the write with ``412
  PreconditionFailed`` when the key exists, so a key never gets a second version, even from two
  writers racing (S3 resolves the race; the loser gets 412, or ``409 ConditionalRequestConflict``
  while the winner is in flight). Both become :class:`~docllm.exceptions.ConflictError`.
* ``ObjectLockMode=COMPLIANCE`` with a retain-until date makes the version undeletable and
  unchangeable by anyone, the root user included, until that date.

The body is sent with a SHA-256 checksum (Object Lock requires an integrity header, and S3 checks
it before storing) and encrypted with the platform's KMS key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3

from docllm.adapters.aws.errors import AwsNotFoundError, aws_errors
from docllm.exceptions import ConflictError
from docllm.ports.compliance import ComplianceStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Reading a key whose only version is a delete marker answers 405: absent, to a reader.
_READ_OVERRIDES = {"MethodNotAllowed": AwsNotFoundError}


def put_once_request(
    *, bucket: str, key: str, body: bytes, kms_key_id: str | None, retain_until: datetime
) -> dict[str, Any]:
    """The ``PutObject`` parameters of one write-once manifest (also checked against botocore's model)."""
    request: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "Body": body,
        "ContentType": "application/json",
        "IfNoneMatch": "*",
        "ObjectLockMode": "COMPLIANCE",
        "ObjectLockRetainUntilDate": retain_until,
        "ChecksumAlgorithm": "SHA256",
    }
    if kms_key_id:
        request["ServerSideEncryption"] = "aws:kms"
        request["SSEKMSKeyId"] = kms_key_id
    return request


class ObjectLockStore(ComplianceStore):
    """Write-once objects in an Object Lock bucket.

    Parameters
    ----------
    bucket:
        The compliance bucket (created with Object Lock enabled).
    kms_key_id:
        SSE-KMS key of every write; None leaves it to the bucket's default encryption.
    retention_days:
        Compliance-mode retention of each manifest from the day it is written.
    client:
        A boto3 S3 client; one is built on first use when omitted (never at import).

    Examples
    --------
    >>> store = ObjectLockStore(bucket="docllm-compliance", kms_key_id=None, retention_days=3650)  # doctest: +SKIP
    >>> store.put_once("manifests/tiny-s3/00000001.json", envelope_bytes)  # doctest: +SKIP
    's3://docllm-compliance/manifests/tiny-s3/00000001.json'
    """

    def __init__(
        self, *, bucket: str, kms_key_id: str | None, retention_days: int, client: S3Client | None = None
    ) -> None:
        if retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.retention_days = retention_days
        self._client = client

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = boto3.client("s3")
        return self._client

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put_once(self, key: str, body: bytes) -> str:
        retain_until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=self.retention_days)
        request = put_once_request(
            bucket=self.bucket, key=key, body=body, kms_key_id=self.kms_key_id, retain_until=retain_until
        )
        try:
            with aws_errors(f"S3 PutObject (write-once) {self.uri(key)}"):
                self.client.put_object(**request)
        except ConflictError as e:
            raise ConflictError(f"{key} is already stored (write-once)") from e
        return self.uri(key)

    def get(self, key: str) -> bytes:
        with aws_errors(f"S3 GetObject {self.uri(key)}", overrides=_READ_OVERRIDES):
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            return bytes(resp["Body"].read())

    def list(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        with aws_errors(f"S3 ListObjectsV2 s3://{self.bucket}/{prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys += [o["Key"] for o in page.get("Contents", [])]
        return sorted(keys)
