"""ObjectLockStore: write-once on moto (Object Lock bucket, If-None-Match), requests against
botocore's S3 model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import ANY, Stubber
from botocore.validate import validate_parameters

from docllm.adapters.aws.compliance import ObjectLockStore, put_once_request
from docllm.exceptions import ConflictError, NotFoundError

BUCKET = "docllm-compliance"
KMS = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_the_put_request_is_valid_for_the_service_model() -> None:
    model = botocore.session.get_session().get_service_model("s3")
    shape = model.operation_model("PutObject").input_shape
    assert shape is not None
    request = put_once_request(
        bucket=BUCKET, key="manifests/f/00000001.json", body=b"{}", kms_key_id=KMS, retain_until=datetime.now(UTC)
    )
    validate_parameters(request, shape)
    assert request["IfNoneMatch"] == "*"
    assert request["ObjectLockMode"] == "COMPLIANCE"
    assert request["ChecksumAlgorithm"] == "SHA256"
    assert (request["ServerSideEncryption"], request["SSEKMSKeyId"]) == ("aws:kms", KMS)


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name="eu-west-1")
    client.create_bucket(
        Bucket=BUCKET,
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
        ObjectLockEnabledForBucket=True,
    )
    return client


def test_put_once_stores_a_locked_object_and_refuses_to_overwrite(s3: Any) -> None:
    store = ObjectLockStore(bucket=BUCKET, kms_key_id=None, retention_days=30, client=s3)
    key = "manifests/tiny-s3/00000001.json"
    assert store.put_once(key, b'{"one":1}') == f"s3://{BUCKET}/{key}"
    with pytest.raises(ConflictError, match="write-once"):
        store.put_once(key, b'{"two":2}')
    assert store.get(key) == b'{"one":1}'
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    assert len(versions) == 1  # the refused write made no second version
    head = s3.head_object(Bucket=BUCKET, Key=key)  # (moto answers GetObjectRetention with a 500)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=29)


def test_list_and_get(s3: Any) -> None:
    store = ObjectLockStore(bucket=BUCKET, kms_key_id=None, retention_days=1, client=s3)
    for key in ["manifests/f/00000002.json", "manifests/f/00000001.json", "keys/k.json"]:
        store.put_once(key, b"x")
    assert store.list("manifests/f/") == ["manifests/f/00000001.json", "manifests/f/00000002.json"]
    with pytest.raises(NotFoundError):
        store.get("manifests/f/00000009.json")


@pytest.mark.parametrize("code,status", [("PreconditionFailed", 412), ("ConditionalRequestConflict", 409)])
def test_a_lost_conditional_write_is_a_conflict(code: str, status: int) -> None:
    client = boto3.client("s3", region_name="eu-west-1")
    stub = Stubber(client)
    expected = {
        "Bucket": BUCKET,
        "Key": "k.json",
        "Body": b"x",
        "ContentType": "application/json",
        "IfNoneMatch": "*",
        "ObjectLockMode": "COMPLIANCE",
        "ObjectLockRetainUntilDate": ANY,
        "ChecksumAlgorithm": "SHA256",
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": KMS,
    }
    stub.add_client_error("put_object", service_error_code=code, http_status_code=status, expected_params=expected)
    with stub, pytest.raises(ConflictError):
        ObjectLockStore(bucket=BUCKET, kms_key_id=KMS, retention_days=7, client=client).put_once("k.json", b"x")
