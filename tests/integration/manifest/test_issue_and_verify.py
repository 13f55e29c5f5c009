"""Compliance manifests on a local platform: issued from the records, verified against the stores,
and every tampering the goals name detected and named."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from docllm.adapters.local.compliance import AppendOnlyStore
from docllm.adapters.local.objects import LocalObjectStore
from docllm.adapters.local.signer import LocalKeySigner
from docllm.bootstrap import Platform
from docllm.exceptions import TransientError
from docllm.faults import unwrap
from docllm.manifest.canonical import canonical_json
from docllm.manifest.chain import manifest_key, state_pk
from docllm.manifest.report import VerificationReport
from docllm.manifest.statement import PREDICATE_TYPE, STATEMENT_TYPE, shape_problems
from docllm.ports.compliance import ComplianceStore
from docllm.ports.signer import verify_envelope
from docllm.service_layer import manifest as manifests
from tests.integration.manifest.conftest import (
    DATASET,
    FAMILY,
    TOKENIZER,
    Seeded,
    approve,
    blob_path,
    decision,
    seed_model,
)


def kinds(report: VerificationReport) -> set[tuple[str, str]]:
    return {(m.kind, m.subject) for m in report.mismatches}


def _store_path(p: Platform, key: str) -> Path:
    store = unwrap(p.compliance)
    assert isinstance(store, AppendOnlyStore)
    return store.root / key


def _replace_entry(p: Platform, key: str, body: bytes) -> None:
    """What an attacker with the local directory can do (S3 Object Lock forbids it on AWS)."""
    path = _store_path(p, key)
    path.unlink()
    path.write_bytes(body)


# --- issue ---------------------------------------------------------------------------------------


def test_a_clean_manifest_verifies(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    issued = approve(p, version, "d1")
    assert (issued.sequence, issued.key, issued.outcome) == (1, manifest_key(FAMILY, 1), "issued")
    report = manifests.verify(p, version)
    assert report.ok, report.mismatches
    assert report.checked == {
        "model": 3,
        "document": 3,
        "dataset-manifest": 1,
        "tokenizer": 4,
        "shard": 4,
        "byproduct": 2,
    }
    assert report.manifest_sha256 == issued.sha256


def test_the_statement_is_assembled_from_the_records(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    st = manifests.show(p, version)
    assert shape_problems(st) == []
    assert (st["_type"], st["predicateType"]) == (STATEMENT_TYPE, PREDICATE_TYPE)
    assert [s["name"] for s in st["subject"]] == ["config.json", "model.safetensors", "tokenizer.json"]
    build = st["predicate"]["buildDefinition"]
    assert build["externalParameters"]["trainConfig"] == {"lr": 3e-4, "batch_size": 8, "seed": 1}
    assert build["externalParameters"]["familyDefinition"]["name"] == FAMILY
    internal = build["internalParameters"]
    assert (internal["datasetVersion"], internal["tokenizerVersion"]) == (DATASET, TOKENIZER)
    assert internal["chain"] == {"family": FAMILY, "sequence": 1, "previous_sha256": None}
    docs = {d["name"]: d for d in build["resolvedDependencies"] if d["annotations"]["kind"] == "document"}
    key = "s3/UsingBucket.md"
    assert docs[key]["uri"] == f"s3://{seeded.raw}/{key}?versionId={seeded.doc_versions[key]}"
    code = [d for d in build["resolvedDependencies"] if d["annotations"]["kind"] == "code"]
    assert {d["name"] for d in code} == {"code:train", "code:evaluate", "code:issuer"}
    assert next(d for d in code if d["name"] == "code:train")["digest"] == {"gitCommit": "a" * 40}
    run = st["predicate"]["runDetails"]
    assert run["metadata"]["invocationId"] == f"docllm-dev-train-{FAMILY}-{1:016d}-1"
    by_name = {b["name"]: b for b in run["byproducts"]}
    assert by_name["decision"]["annotations"]["decision_id"] == "d1"
    assert by_name["jobs"]["annotations"]["tokenizer"] == "docllm-dev-tokenizer-0123456789abcdef-1"
    assert by_name["metrics"]["annotations"]["evaluation"]["perplexity"] == 30.1


def test_the_envelope_verifies_with_the_published_public_key(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    issued = approve(p, version, "d1")
    envelope = json.loads(p.compliance.get(issued.key))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    published = json.loads(p.compliance.get(manifests.public_key_key(p.signer.key_id)))
    assert verify_envelope(envelope, published)


def test_each_decision_is_the_next_chain_entry_naming_the_previous_digest(seeded: Seeded) -> None:
    p = seeded.p
    first = approve(p, seeded.model_versions[0], "d1")
    second_version = seed_model(seeded, 2)
    second = approve(p, second_version, "d2")
    assert second.sequence == 2
    link = manifests.show(p, second_version)["predicate"]["buildDefinition"]["internalParameters"]["chain"]
    assert link["previous_sha256"] == first.sha256
    assert manifests.verify(p, second_version).ok
    assert manifests.verify(p, seeded.model_versions[0]).ok


def test_a_redelivery_after_a_crash_adopts_the_stored_manifest(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    inputs = manifests.gather(p, version, decision(version, "d1"))
    first = manifests.issue(p, inputs)  # stored, then the process died before the commit
    again = manifests.issue(p, manifests.gather(p, version, decision(version, "d1")))
    assert again.outcome == "adopted"
    assert (again.key, again.sha256) == (first.key, first.sha256)
    p.state.transact(again.writes)
    assert manifests.issue(p, inputs).outcome == "recorded"
    assert manifests.issue(p, inputs).writes == []
    assert p.compliance.list(f"manifests/{FAMILY}/") == [first.key]


def test_a_new_decision_chains_after_an_uncommitted_entry(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    orphan = manifests.issue(p, manifests.gather(p, version, decision(version, "d1")))
    later = approve(p, seed_model(seeded, 2), "d2")
    assert later.sequence == orphan.sequence + 1
    report = manifests.verify(p, seeded.model_versions[1])
    assert kinds(report) == {("state", orphan.key)}  # stored, never recorded: named, not hidden


class HidingStore(ComplianceStore):
    """Lists nothing once: the issuer reads a head that another issuer has moved since."""

    def __init__(self, inner: ComplianceStore) -> None:
        self.inner, self.hide = inner, True

    def put_once(self, key: str, body: bytes) -> str:
        return self.inner.put_once(key, body)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str = "") -> list[str]:
        if self.hide and prefix.startswith("manifests/"):
            self.hide = False
            return []
        return self.inner.list(prefix)

    def uri(self, key: str) -> str:
        return self.inner.uri(key)


def test_a_sequence_number_taken_by_another_decision_is_a_transient_error(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    p.__dict__["compliance"] = HidingStore(p.compliance)
    with pytest.raises(TransientError, match="taken by another decision"):
        manifests.issue(p, manifests.gather(p, version, decision(version, "d2", status="Rejected")))
    retried = manifests.issue(p, manifests.gather(p, version, decision(version, "d2", status="Rejected")))
    assert retried.sequence == 2


def test_non_finite_metrics_are_recorded_as_text(seeded: Seeded) -> None:
    p = seeded.p
    version = seed_model(seeded, 99)  # final_val_loss NaN in its result
    p.state.put(
        "models", version, {**(p.state.get("models", version) or {}), "metrics": {"final_val_loss": float("nan")}}
    )
    approve(p, version, "d-nan", status="Rejected")
    metrics = manifests.show(p, version)["predicate"]["runDetails"]["byproducts"]
    assert {b["name"]: b for b in metrics}["metrics"]["annotations"]["training"]["final_val_loss"] == "NaN"


# --- tampering ---------------------------------------------------------------------------------


def test_one_changed_byte_in_an_input_document_is_named(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    key = "s3/Versioning.md"
    path = blob_path(p, seeded.raw, key, seeded.doc_versions[key])
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(bytes(data))
    report = manifests.verify(p, version)
    uri = f"s3://{seeded.raw}/{key}?versionId={seeded.doc_versions[key]}"
    assert not report.ok and kinds(report) == {("digest", uri)}


def test_a_new_version_of_an_input_document_is_not_a_change(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    p.objects.put(seeded.raw, "s3/Versioning.md", b"# Versioning, rewritten later\n")
    assert manifests.verify(p, version).ok


def test_a_removed_input_document_version_is_named_missing(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    key = "ec2/Instances.md"
    store = unwrap(p.objects)
    assert isinstance(store, LocalObjectStore)
    store._db.connection().execute(  # what expiring a noncurrent version does
        "DELETE FROM versions WHERE bucket = ? AND key = ?", (seeded.raw, key)
    )
    report = manifests.verify(p, version)
    assert {m.kind for m in report.mismatches} == {"missing"}


@pytest.mark.parametrize(
    "key",
    [
        f"tokenizers/{TOKENIZER}/tokenizer.model",
        f"shards/{DATASET}/{TOKENIZER}/train/part-000/shard-00000.bin",
        f"models/docllm-dev-train-{FAMILY}-{1:016d}-1/hf/model.safetensors",
    ],
    ids=["tokenizer", "shard", "weights"],
)
def test_one_changed_byte_in_an_artefact_is_named(seeded: Seeded, key: str) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    data = bytearray(p.objects.get(seeded.art, key))
    data[len(data) // 2] ^= 0x80
    p.objects.put(seeded.art, key, bytes(data))
    report = manifests.verify(p, version)
    assert not report.ok and kinds(report) == {("digest", f"s3://{seeded.art}/{key}")}


def test_a_file_added_to_the_export_is_named_unlisted(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    key = f"models/docllm-dev-train-{FAMILY}-{1:016d}-1/hf/modeling_custom.py"
    p.objects.put(seeded.art, key, b"import os\n")
    assert kinds(manifests.verify(p, version)) == {("unlisted", f"s3://{seeded.art}/{key}")}


def _three_entries(seeded: Seeded) -> list[str]:
    p = seeded.p
    keys = [approve(p, seeded.model_versions[0], "d1").key]
    keys.append(approve(p, seed_model(seeded, 2), "d2").key)
    keys.append(approve(p, seed_model(seeded, 3), "d3").key)
    return keys


def test_a_removed_chain_entry_is_named(seeded: Seeded) -> None:
    p = seeded.p
    keys = _three_entries(seeded)
    _store_path(p, keys[1]).unlink()
    report = manifests.verify(p, seeded.model_versions[2])
    assert ("chain", keys[1]) in kinds(report)
    assert not report.ok


def test_a_removed_last_chain_entry_is_named(seeded: Seeded) -> None:
    p = seeded.p
    keys = _three_entries(seeded)
    _store_path(p, keys[2]).unlink()
    report = manifests.verify(p, seeded.model_versions[0])
    assert ("chain", keys[2]) in kinds(report)


def test_two_swapped_chain_entries_are_named(seeded: Seeded) -> None:
    p = seeded.p
    keys = _three_entries(seeded)
    first, second = p.compliance.get(keys[0]), p.compliance.get(keys[1])
    _replace_entry(p, keys[0], second)
    _replace_entry(p, keys[1], first)
    report = manifests.verify(p, seeded.model_versions[2])
    chain = {m.subject for m in report.mismatches if m.kind == "chain"}
    assert {keys[0], keys[1]} <= chain


def test_an_altered_payload_fails_the_signature(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    issued = approve(p, version, "d1")
    envelope = json.loads(p.compliance.get(issued.key))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["buildDefinition"]["externalParameters"]["trainConfig"]["lr"] = 1e-3
    envelope["payload"] = base64.b64encode(canonical_json(statement)).decode()
    _replace_entry(p, issued.key, canonical_json(envelope))
    report = manifests.verify(p, version)
    assert ("signature", issued.key) in kinds(report)
    assert ("state", issued.key) in kinds(report)  # and the state's digest no longer matches


def test_a_manifest_signed_by_another_key_fails_the_signature(seeded: Seeded, tmp_path: Path) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    issued = approve(p, version, "d1")
    envelope = json.loads(p.compliance.get(issued.key))
    payload = base64.b64decode(envelope["payload"])
    forged = LocalKeySigner(tmp_path / "other-keys").sign(payload)
    _replace_entry(p, issued.key, canonical_json(forged))
    assert ("unknown_key", issued.key) in kinds(manifests.verify(p, version))  # its key was never published
    forged["signatures"][0]["keyid"] = p.signer.key_id  # claiming to be ours does not help
    _replace_entry(p, issued.key, canonical_json(forged))
    assert ("signature", issued.key) in kinds(manifests.verify(p, version))


def test_verify_with_an_explicit_public_key(seeded: Seeded, tmp_path: Path) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    other = LocalKeySigner(tmp_path / "other-keys").public_key()
    assert manifests.verify(p, version, public_key=p.signer.public_key()).ok
    report = manifests.verify(p, version, public_key=other)
    assert {m.kind for m in report.mismatches} == {"signature"}


def test_stored_manifests_are_read_only(seeded: Seeded) -> None:
    p = seeded.p
    issued = approve(p, seeded.model_versions[0], "d1")
    assert os.stat(_store_path(p, issued.key)).st_mode & 0o777 == 0o444
    assert p.state.get(state_pk(FAMILY), "00000001")["sha256"] == issued.sha256  # type: ignore[index]
