"""Verification years later: each entry is checked with the key that signed it (found in the
write-once store by the key id its signature names), an auditor's own key file overrides the
store, and one entry of a model version can be verified by its sequence number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docllm.adapters.local.compliance import AppendOnlyStore
from docllm.adapters.local.signer import PUBLIC_JSON, PUBLIC_PEM, LocalKeySigner
from docllm.bootstrap import Platform
from docllm.exceptions import ConfigurationError, NotFoundError
from docllm.faults import unwrap
from docllm.manifest.canonical import canonical_json
from docllm.manifest.exceptions import ManifestNotFoundError
from docllm.manifest.report import VerificationReport
from docllm.ports.signer import load_public_keys, public_key_to_dict
from docllm.service_layer import manifest as manifests
from tests.integration.manifest.conftest import Seeded, approve, seed_model


def kinds(report: VerificationReport) -> set[tuple[str, str]]:
    return {(m.kind, m.subject) for m in report.mismatches}


def _store_path(p: Platform, key: str) -> Path:
    store = unwrap(p.compliance)
    assert isinstance(store, AppendOnlyStore)
    return store.root / key


def _rotate(p: Platform, keys_dir: Path) -> LocalKeySigner:
    """A new signing key from now on (what pointing the platform at a new key does)."""
    signer = LocalKeySigner(keys_dir)
    p.__dict__["signer"] = signer  # Platform.signer is a cached property
    return signer


@pytest.fixture
def rotated(seeded: Seeded, tmp_path: Path) -> tuple[Seeded, list[str], list[str]]:
    """Two decisions, the signing key rotated between them: (seeded, versions, key ids)."""
    p = seeded.p
    first = seeded.model_versions[0]
    old_id = p.signer.key_id
    approve(p, first, "d1")
    new_id = _rotate(p, tmp_path / "new-keys").key_id
    second = seed_model(seeded, 2)
    approve(p, second, "d2")
    assert old_id != new_id
    return seeded, [first, second], [old_id, new_id]


def test_entries_signed_before_a_key_rotation_still_verify(rotated: tuple[Seeded, list[str], list[str]]) -> None:
    seeded, versions, key_ids = rotated
    p = seeded.p
    old_report, new_report = manifests.verify(p, versions[0]), manifests.verify(p, versions[1])
    assert old_report.ok, old_report.mismatches
    assert new_report.ok, new_report.mismatches
    assert (old_report.key_id, new_report.key_id) == (key_ids[0], key_ids[1])


def test_an_entry_whose_published_key_is_gone_is_an_unknown_key(rotated: tuple[Seeded, list[str], list[str]]) -> None:
    seeded, versions, key_ids = rotated
    p = seeded.p
    _store_path(p, manifests.public_key_key(key_ids[0])).unlink()  # bypassing put_once, on disk
    report = manifests.verify(p, versions[1])
    unknown = [m for m in report.mismatches if m.kind == "unknown_key"]
    assert [(m.subject, m.actual) for m in unknown] == [(manifests.manifest_key("tiny-s3", 1), key_ids[0])]
    assert not report.ok
    assert manifests.verify(p, versions[0]).key_id is None


def test_a_published_key_that_is_not_the_key_its_name_says_is_not_trusted(
    rotated: tuple[Seeded, list[str], list[str]], tmp_path: Path
) -> None:
    seeded, versions, key_ids = rotated
    p = seeded.p
    impostor = public_key_to_dict(LocalKeySigner(tmp_path / "impostor").public_key())
    impostor["keyid"] = key_ids[0]
    path = _store_path(p, manifests.public_key_key(key_ids[0]))
    path.unlink()
    path.write_bytes(canonical_json(impostor))
    assert ("unknown_key", manifests.manifest_key("tiny-s3", 1)) in kinds(manifests.verify(p, versions[0]))


def test_the_current_key_is_trusted_when_it_was_never_published(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    _store_path(p, manifests.public_key_key(p.signer.key_id)).unlink()
    report = manifests.verify(p, version)
    assert report.ok, report.mismatches


def test_given_keys_override_the_store(rotated: tuple[Seeded, list[str], list[str]], tmp_path: Path) -> None:
    seeded, versions, _ = rotated
    p = seeded.p
    old_keys = load_public_keys(p.data_dir / "keys" / PUBLIC_PEM)
    new_keys = load_public_keys(tmp_path / "new-keys" / PUBLIC_JSON)
    both = manifests.verify(p, versions[1], public_key=old_keys + new_keys)
    assert both.ok, both.mismatches
    only_new = manifests.verify(p, versions[1], public_key=new_keys)
    assert {m.kind for m in only_new.mismatches} == {"signature"}  # entry 1: not signed by a given key
    assert {m.subject for m in only_new.mismatches} == {manifests.manifest_key("tiny-s3", 1)}


def test_a_model_versions_earlier_entry_is_verified_by_its_sequence(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    approve(p, version, "d2", status="Rejected", decided_by="alice", override=True)
    assert manifests.verify(p, version).sequence == 2
    first = manifests.verify(p, version, sequence=1)
    assert (first.ok, first.sequence, first.manifest_key) == (True, 1, manifests.manifest_key("tiny-s3", 1))
    other = seed_model(seeded, 2)
    with pytest.raises(ManifestNotFoundError):
        manifests.verify(p, other, sequence=1)  # entry 1 is not about that version


# --- key files ------------------------------------------------------------------------------------


def test_key_files_load_from_pem_and_json(tmp_path: Path) -> None:
    signer = LocalKeySigner(tmp_path / "keys")
    want = signer.public_key()
    (pem,) = load_public_keys(tmp_path / "keys" / PUBLIC_PEM)
    (from_json,) = load_public_keys(tmp_path / "keys" / PUBLIC_JSON)
    assert pem == from_json == want  # the PEM key gets the id the signatures carry
    other = LocalKeySigner(tmp_path / "other").public_key()
    listed = tmp_path / "keys.json"
    listed.write_text(json.dumps([public_key_to_dict(want), public_key_to_dict(other)]))
    assert [k.keyid for k in load_public_keys(listed)] == [want.keyid, other.keyid]
    two_pems = tmp_path / "two.pem"
    two_pems.write_bytes((tmp_path / "keys" / PUBLIC_PEM).read_bytes() + (tmp_path / "other" / PUBLIC_PEM).read_bytes())
    assert [k.keyid for k in load_public_keys(two_pems)] == [want.keyid, other.keyid]


def test_a_file_without_a_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_public_keys(tmp_path / "absent.pem")
    for name, body in {"a.json": b'{"hello": 1}', "b.pem": b"-----BEGIN PUBLIC KEY-----\nxx\n", "c": b"[]"}.items():
        (tmp_path / name).write_bytes(body)
        with pytest.raises(ConfigurationError):
            load_public_keys(tmp_path / name)
