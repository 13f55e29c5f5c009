"""The local signer's key (made once, private, shared by every process) and the append-only store."""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from docllm.adapters.local.compliance import AppendOnlyStore
from docllm.adapters.local.signer import PRIVATE_KEY, PUBLIC_JSON, PUBLIC_PEM, LocalKeySigner
from docllm.exceptions import ConfigurationError, ConflictError, NotFoundError, PermanentError
from docllm.ports.signer import PAYLOAD_TYPE, envelope_payload, public_key_from_dict, verify_envelope


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_is_made_on_first_use_private_with_its_public_half_beside_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    signer = LocalKeySigner(keys)
    assert not keys.exists()  # nothing at construction
    envelope = signer.sign(b'{"a":1}')
    assert mode(keys) == 0o700
    assert mode(keys / PRIVATE_KEY) == 0o600
    assert (keys / PUBLIC_PEM).read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert signer.public_key().keytype == "ed25519"
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert envelope_payload(envelope) == b'{"a":1}'
    assert [s["keyid"] for s in envelope["signatures"]] == [signer.key_id]


def test_every_signer_of_a_directory_uses_the_same_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(lambda _: LocalKeySigner(keys).key_id, range(8)))
    assert len(ids) == 1
    assert LocalKeySigner(keys).key_id in ids
    assert sorted(p.name for p in keys.iterdir()) == sorted([PRIVATE_KEY, PUBLIC_PEM, PUBLIC_JSON])


def test_envelopes_verify_with_the_public_key_only(tmp_path: Path) -> None:
    signer = LocalKeySigner(tmp_path / "keys")
    envelope = signer.sign(b"payload")
    published = public_key_from_dict(json.loads((tmp_path / "keys" / PUBLIC_JSON).read_text()))
    assert verify_envelope(envelope, published)
    assert verify_envelope(envelope, signer.public_key())
    other = LocalKeySigner(tmp_path / "other").public_key()
    assert not verify_envelope(envelope, other)


def test_a_changed_payload_or_payload_type_does_not_verify(tmp_path: Path) -> None:
    signer = LocalKeySigner(tmp_path / "keys")
    envelope = signer.sign(b"payload")
    assert not verify_envelope({**envelope, "payload": "cGF5bG9hZQ=="}, signer.public_key())
    assert not verify_envelope({**envelope, "payloadType": "text/plain"}, signer.public_key())
    assert not verify_envelope({"payload": "!!"}, signer.public_key())
    assert verify_envelope(envelope, signer.public_key())  # the checks above left it intact


def test_a_corrupt_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / PRIVATE_KEY).write_bytes(b"not a key")
    with pytest.raises(ConfigurationError, match="not a usable signing key"):
        LocalKeySigner(keys).public_key()


# --- append-only store ----------------------------------------------------------------------------


def test_put_once_refuses_to_overwrite(tmp_path: Path) -> None:
    store = AppendOnlyStore(tmp_path / "c")
    uri = store.put_once("manifests/f/00000001.json", b"one")
    assert uri.startswith("file://") and uri.endswith("/manifests/f/00000001.json")
    with pytest.raises(ConflictError):
        store.put_once("manifests/f/00000001.json", b"two")
    with pytest.raises(ConflictError):
        store.put_once("manifests/f/00000001.json", b"one")  # even the same bytes: the caller compares
    assert store.get("manifests/f/00000001.json") == b"one"


def test_stored_files_are_read_only_in_a_private_root_with_no_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "c"
    store = AppendOnlyStore(root)
    store.put_once("a/b.json", b"x")
    assert mode(root) == 0o700
    assert mode(root / "a" / "b.json") == 0o444
    assert not any((root / ".tmp").iterdir())
    assert store.list() == ["a/b.json"]


def test_racing_writers_of_one_key_leave_one_winner(tmp_path: Path) -> None:
    store = AppendOnlyStore(tmp_path / "c")

    def write(i: int) -> bool:
        try:
            store.put_once("k.json", f"writer {i}".encode())
        except ConflictError:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(write, range(16)))
    assert wins.count(True) == 1
    assert store.get("k.json") == f"writer {wins.index(True)}".encode()


def test_list_is_in_key_order_under_a_prefix(tmp_path: Path) -> None:
    store = AppendOnlyStore(tmp_path / "c")
    for key in ["manifests/f/00000002.json", "manifests/g/00000001.json", "manifests/f/00000001.json", "keys/k.json"]:
        store.put_once(key, b"x")
    assert store.list("manifests/f/") == ["manifests/f/00000001.json", "manifests/f/00000002.json"]
    assert store.list("nothing/") == []
    assert AppendOnlyStore(tmp_path / "absent").list() == []


def test_missing_keys_and_keys_that_escape_the_root_are_refused(tmp_path: Path) -> None:
    store = AppendOnlyStore(tmp_path / "c")
    with pytest.raises(NotFoundError):
        store.get("absent.json")
    for bad in ["", "/etc/passwd", "../x", "a//b", "a/./b", ".tmp/x"]:
        with pytest.raises(PermanentError):
            store.put_once(bad, b"x")
    assert not (tmp_path / "x").exists()
