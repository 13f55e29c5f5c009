"""S3ObjectStore against moto (behaviour) and botocore's Stubber (exact requests)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from docllm.adapters.aws.s3 import MiB, S3ObjectStore
from docllm.exceptions import NotFoundError, PermanentError

BUCKET = "raw"


@pytest.fixture
def s3(aws: None) -> Iterator[S3ObjectStore]:
    client = boto3.client("s3", region_name="eu-west-1")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    # A 5 MiB threshold (S3's smallest part) keeps the multipart test small.
    yield S3ObjectStore(client, multipart_threshold=5 * MiB)


def test_put_returns_unquoted_etag_and_version_matching_head(s3: S3ObjectStore) -> None:
    info = s3.put(BUCKET, "s3/a.md", b"# A", metadata={"sha256": "abc"}, content_type="text/markdown")
    head = s3.head(BUCKET, "s3/a.md")
    assert not info.etag.startswith('"')
    assert info.etag == head.etag
    assert info.version_id is not None and info.version_id == head.version_id
    assert head.metadata == {"sha256": "abc"}
    assert head.content_type == "text/markdown"
    assert head.size == 3


def test_get_returns_an_older_version_when_asked(s3: S3ObjectStore) -> None:
    v1 = s3.put(BUCKET, "k", b"one")
    s3.put(BUCKET, "k", b"two")
    assert s3.get(BUCKET, "k") == b"two"
    assert s3.get(BUCKET, "k", version_id=v1.version_id) == b"one"


def test_get_range_is_inclusive_and_cut_at_the_end(s3: S3ObjectStore) -> None:
    s3.put(BUCKET, "k", b"0123456789")
    assert s3.get_range(BUCKET, "k", 2, 4) == b"234"
    assert s3.get_range(BUCKET, "k", 8, 100) == b"89"


def test_get_range_rejects_an_inverted_range_without_calling_s3(s3: S3ObjectStore) -> None:
    with pytest.raises(PermanentError, match="range"):
        s3.get_range(BUCKET, "k", 5, 2)


def test_missing_key_bucket_and_deleted_object_raise_not_found(s3: S3ObjectStore) -> None:
    with pytest.raises(NotFoundError):
        s3.get(BUCKET, "absent")
    with pytest.raises(NotFoundError):
        s3.head(BUCKET, "absent")
    with pytest.raises(NotFoundError):
        s3.head("no-such-bucket", "k")
    s3.put(BUCKET, "gone", b"x")
    s3.delete(BUCKET, "gone")
    with pytest.raises(NotFoundError):
        s3.get(BUCKET, "gone")


def test_delete_keeps_older_versions_readable(s3: S3ObjectStore) -> None:
    v1 = s3.put(BUCKET, "k", b"kept")
    s3.delete(BUCKET, "k")
    assert s3.get(BUCKET, "k", version_id=v1.version_id) == b"kept"


def test_list_yields_current_objects_under_the_prefix_in_key_order(s3: S3ObjectStore) -> None:
    for key in ["p/b", "p/a", "p/c", "other/z"]:
        s3.put(BUCKET, key, b"x")
    s3.delete(BUCKET, "p/c")
    listed = list(s3.list(BUCKET, "p/"))
    assert [o.key for o in listed] == ["p/a", "p/b"]
    assert all(o.size == 1 and not o.etag.startswith('"') for o in listed)


def test_list_follows_continuation_tokens() -> None:
    client = boto3.client("s3", region_name="eu-west-1")
    stamp = datetime(2024, 1, 1, tzinfo=UTC)

    def obj(key: str) -> dict:
        return {"Key": key, "Size": 1, "ETag": '"e"', "LastModified": stamp}

    with Stubber(client) as stub:
        stub.add_response(
            "list_objects_v2",
            {"Contents": [obj("a"), obj("b")], "IsTruncated": True, "NextContinuationToken": "t1"},
            {"Bucket": BUCKET, "Prefix": ""},
        )
        stub.add_response(
            "list_objects_v2",
            {"Contents": [obj("c")], "IsTruncated": False},
            {"Bucket": BUCKET, "Prefix": "", "ContinuationToken": "t1"},
        )
        assert [o.key for o in S3ObjectStore(client).list(BUCKET)] == ["a", "b", "c"]
        stub.assert_no_pending_responses()


def test_put_file_small_and_multipart_round_trip(s3: S3ObjectStore, tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 1000)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (6 * MiB // 256))  # 6 MiB: two parts
    info_small = s3.put_file(BUCKET, "small", small, metadata={"kind": "small"})
    info_big = s3.put_file(BUCKET, "big", big, metadata={"kind": "big"}, content_type="application/x-tar")
    assert info_small.size == 1000 and info_small.version_id
    assert info_big.size == big.stat().st_size
    assert "-" in info_big.etag  # multipart ETags end in -<parts>
    assert s3.head(BUCKET, "big").metadata == {"kind": "big"}
    out = tmp_path / "out.bin"
    s3.download_file(BUCKET, "big", out)
    assert out.read_bytes() == big.read_bytes()


def test_download_of_a_missing_object_raises_not_found_and_leaves_no_file(s3: S3ObjectStore, tmp_path: Path) -> None:
    target = tmp_path / "nothing"
    with pytest.raises(NotFoundError):
        s3.download_file(BUCKET, "absent", target)
    assert not target.exists()


def test_kms_key_is_requested_on_every_write(tmp_path: Path) -> None:
    client = boto3.client("s3", region_name="eu-west-1")
    store = S3ObjectStore(client, kms_key_id="alias/docllm")
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    expected = {
        "Bucket": BUCKET,
        "Key": "k",
        "Body": ANY,
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/docllm",
    }
    with Stubber(client) as stub:
        stub.add_response("put_object", {"ETag": '"e1"', "VersionId": "v1"}, expected)
        stub.add_response("put_object", {"ETag": '"e2"'}, expected)
        assert store.put(BUCKET, "k", b"abc").version_id == "v1"
        # An unversioned bucket returns no VersionId: the port reports None.
        assert store.put_file(BUCKET, "k", src).version_id is None
        stub.assert_no_pending_responses()


def test_access_denied_is_permanent() -> None:
    client = boto3.client("s3", region_name="eu-west-1")
    with Stubber(client) as stub:
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(PermanentError):
            S3ObjectStore(client).get(BUCKET, "k")


def test_no_client_is_created_until_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    monkeypatch.setattr(boto3, "client", lambda name, **_: created.append(name))
    store = S3ObjectStore()
    assert created == []
    _ = store.client
    assert created == ["s3"]
