"""ObjectStore contract: the local directory store behaves as S3 does (moto stands in for S3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.exceptions import NotFoundError, PermanentError
from docllm.ports.objects import ObjectStore

from .conftest import BUCKET


def test_put_then_head_report_the_same_version_etag_and_metadata(object_store: ObjectStore) -> None:
    # S3 lower-cases user metadata keys, so the contract uses lower-case keys.
    put = object_store.put(BUCKET, "s3/a.md", b"# Title\n", metadata={"sha256": "ab12"}, content_type="text/markdown")
    head = object_store.head(BUCKET, "s3/a.md")
    assert put.version_id is not None
    assert (head.version_id, head.etag, head.size) == (put.version_id, put.etag, 8)
    assert not head.etag.startswith('"')
    assert head.metadata == {"sha256": "ab12"}
    assert head.content_type == "text/markdown"


def test_overwrite_keeps_the_old_version_readable(object_store: ObjectStore) -> None:
    v1 = object_store.put(BUCKET, "k", b"one")
    v2 = object_store.put(BUCKET, "k", b"two")
    assert v1.version_id != v2.version_id
    assert object_store.get(BUCKET, "k") == b"two"
    assert object_store.get(BUCKET, "k", version_id=v1.version_id) == b"one"
    assert object_store.head(BUCKET, "k", version_id=v1.version_id).size == 3


def test_get_range_is_inclusive_and_stops_at_the_last_byte(object_store: ObjectStore) -> None:
    object_store.put(BUCKET, "k", b"0123456789")
    assert object_store.get_range(BUCKET, "k", 0, 0) == b"0"
    assert object_store.get_range(BUCKET, "k", 3, 5) == b"345"
    assert object_store.get_range(BUCKET, "k", 7, 1000) == b"789"


def test_inverted_range_is_a_permanent_error(object_store: ObjectStore) -> None:
    object_store.put(BUCKET, "k", b"0123456789")
    with pytest.raises(PermanentError):
        object_store.get_range(BUCKET, "k", 5, 2)


def test_absent_objects_raise_not_found(object_store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        object_store.head(BUCKET, "absent")
    with pytest.raises(NotFoundError):
        object_store.get(BUCKET, "absent")
    with pytest.raises(NotFoundError):
        object_store.get_range(BUCKET, "absent", 0, 1)
    with pytest.raises(NotFoundError):
        object_store.download_file(BUCKET, "absent", tmp_path / "out")
    with pytest.raises(NotFoundError):
        object_store.head("no-such-bucket", "k")


def test_delete_hides_the_object_but_keeps_its_versions(object_store: ObjectStore) -> None:
    v1 = object_store.put(BUCKET, "k", b"kept")
    object_store.delete(BUCKET, "k")
    with pytest.raises(NotFoundError):
        object_store.head(BUCKET, "k")
    with pytest.raises(NotFoundError):
        object_store.get(BUCKET, "k")
    assert [o.key for o in object_store.list(BUCKET)] == []
    assert object_store.get(BUCKET, "k", version_id=v1.version_id) == b"kept"


def test_deleting_an_absent_key_succeeds(object_store: ObjectStore) -> None:
    object_store.delete(BUCKET, "never-written")
    assert list(object_store.list(BUCKET)) == []


def test_list_returns_current_objects_under_the_prefix_in_key_order(object_store: ObjectStore) -> None:
    for key, body in [
        ("docs/b.md", b"bb"),
        ("docs/a.md", b"a"),
        ("docs/sub/c.md", b"ccc"),
        ("other/d", b"d"),
    ]:
        object_store.put(BUCKET, key, body)
    object_store.put(BUCKET, "docs/a.md", b"a2")  # overwrite: listed once, current size
    listed = list(object_store.list(BUCKET, "docs/"))
    assert [(o.key, o.size) for o in listed] == [("docs/a.md", 2), ("docs/b.md", 2), ("docs/sub/c.md", 3)]
    heads = {o.key: object_store.head(BUCKET, o.key).etag for o in listed}
    assert {o.key: o.etag for o in listed} == heads
    assert len(list(object_store.list(BUCKET))) == 4


def test_put_file_and_download_file_round_trip(object_store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 64)
    info = object_store.put_file(BUCKET, "files/src.bin", src, metadata={"kind": "test"})
    assert info.size == src.stat().st_size
    assert object_store.head(BUCKET, "files/src.bin").etag == info.etag
    out = tmp_path / "out.bin"
    object_store.download_file(BUCKET, "files/src.bin", out)
    assert out.read_bytes() == src.read_bytes()
