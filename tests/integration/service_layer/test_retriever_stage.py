"""The retriever stage: a request launches the job; its completion records the encoder with the gate's
verdict and, when approved, a signed manifest; the platform's index then uses the approved encoder, read
from files checked against that manifest and the platform's records, with its chunk vectors stored so a
new process does not encode the corpus again.

No torch here: a recording runner stands in for SageMaker and the test writes what the job would
(``tests/integration/search/test_retriever_job.py`` runs the job itself).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from docllm.adapters.local.signer import LocalKeySigner
from docllm.bootstrap import Platform
from docllm.cli import retrieval_cmds
from docllm.cli.common import EXIT_FAILED, EXIT_NOT_FOUND
from docllm.cli.main import main
from docllm.dataset.versions import DATASETS_PK, DatasetSummary
from docllm.events.contracts import RetrieverTrainingRequested, TokenizerTrained, to_bus
from docllm.manifest.canonical import canonical_json, sha256_hex
from docllm.manifest.exceptions import ManifestError
from docllm.manifest.retriever import RETRIEVER_BUILD_TYPE, subject_digests
from docllm.manifest.statement import KIND_DATASET, KIND_TOKENIZER
from docllm.ports.search import IndexedChunk
from docllm.ports.signer import envelope_payload, verify_envelope
from docllm.records import JOBS_PK, JobRecord
from docllm.search.encoder import (
    CARD_FILE,
    ENCODER_FILE,
    TOKENIZER_FILE,
    EncoderCard,
    EncoderSettings,
    TextEncoder,
    encoder_version,
    write_encoder_arrays,
)
from docllm.search.retriever_gate import GateFigures
from docllm.service_layer import jobs, retriever
from docllm.service_layer.manifest import public_key_key
from docllm.settings import Settings
from docllm.tokenizer.artifacts import TOKENIZERS_PK, TokenizerSummary
from tests.conftest import REPO
from tests.integration.service_layer.test_train_lora import RecordingRunner
from tests.unit.api.fakes import tokenizer_model

DATASET = "ds-0123456789abcdef"
TOKENIZER = "tok-0123456789ab"
SETTINGS = {"dim": 16, "epochs": 1}
DOCS = {
    "s3/versioning.md": "Enable versioning on the bucket to keep every object version.",
    "s3/lifecycle.md": "Lifecycle rules move an object to cheaper storage or delete it.",
    "iam/policy.md": "A role policy lets the role open the bucket and choose properties.",
}


def _platform(data_dir: Path) -> Platform:
    p = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data_dir)}),
        template=REPO / "template.yaml",
    )
    p.__dict__["jobs"] = RecordingRunner()  # the cached port, replaced
    return p


@pytest.fixture
def p(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    # Read the active record at every search: the gate's decision shows at once, not after 5 s.
    monkeypatch.setattr(retriever, "ACTIVE_CHECK_S", 0.0)
    platform = _platform(tmp_path)
    model = tokenizer_model()
    tok_uri = f"s3://{platform.settings.artifact_bucket}/tokenizers/{TOKENIZER}/"
    platform.objects.put(platform.settings.artifact_bucket, f"tokenizers/{TOKENIZER}/tokenizer.model", model)
    summary = TokenizerSummary(
        version=TOKENIZER,
        dataset_version=DATASET,
        artifacts_uri=tok_uri,
        vocab_size=320,
        model_type="unigram",
        model_sha256=hashlib.sha256(model).hexdigest(),
    )
    platform.state.put(TOKENIZERS_PK, TOKENIZER, summary.model_dump(mode="json"))
    for key, text in DOCS.items():
        chunk = IndexedChunk(
            chunk_id=key, doc_key=key, service=key.split("/")[0], title=key, heading_path=[], text=text
        )
        platform.search.replace_document(key, "v1", [chunk])
    return platform


def _request(**overrides: Any) -> dict[str, Any]:
    asked = RetrieverTrainingRequested(
        dataset_version=DATASET, tokenizer_version=TOKENIZER, settings=SETTINGS, request_id="req-1", **overrides
    )
    return to_bus(asked).to_wire()


def _state_change(name: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "e-1",
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2025-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"TrainingJobName": name, "TrainingJobStatus": "Completed"},
    }


def _complete(p: Platform, *, approved: bool, stored_encoder: bytes | None = None) -> str:
    """Write what the job writes under its output prefix, then deliver its "Completed" state change.

    ``stored_encoder``: other bytes than the card names in place of ``encoder.npz`` (the completion then fails).
    """
    (spec,) = p.jobs.jobs.values()  # type: ignore[attr-defined]
    version = spec.hyperparameters["encoder_version"]
    art = p.settings.artifact_bucket
    prefix = spec.hyperparameters["output_uri"].removeprefix(f"s3://{art}/")
    work = Path(p.settings.data_dir or ".") / "job-out"
    work.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    enc_sha = write_encoder_arrays(
        work / ENCODER_FILE, rng.normal(size=(320, 16)).astype(np.float32), np.zeros(320, dtype=np.float32)
    )
    model = tokenizer_model()
    card = EncoderCard(
        version=version,
        dataset_version=DATASET,
        tokenizer_version=TOKENIZER,
        tokenizer_sha256=hashlib.sha256(model).hexdigest(),
        encoder_sha256=enc_sha,
        settings=EncoderSettings.model_validate(SETTINGS),
        vocab_size=320,
        train_documents=3,
    )
    figures = GateFigures(
        questions=40,
        bm25_recall_at_10=0.80,
        bm25_mrr_at_10=0.60,
        hybrid_recall_at_10=0.85 if approved else 0.78,
        hybrid_mrr_at_10=0.62,
        approved=approved,
        reason="test verdict",
    )
    files = {
        ENCODER_FILE: (work / ENCODER_FILE).read_bytes(),
        TOKENIZER_FILE: model,
        CARD_FILE: card.model_dump_json().encode(),
        retriever.VALIDATION_FILE: figures.model_dump_json().encode(),
        "result.json": card.model_dump_json().encode(),
    }
    if stored_encoder is not None:
        files[ENCODER_FILE] = stored_encoder
    for name, data in files.items():
        p.objects.put(art, prefix + name, data)
    out = jobs.handle_job_state(p, _state_change(spec.name))
    if stored_encoder is None:
        assert out["outcome"] == "completed" and out["next"] == "Retriever Trained", out
    else:
        assert out["outcome"] == "failed" and f"the stored {ENCODER_FILE} is not the file" in out["reason"], out
    return version


def _published(p: Platform, detail_type: str) -> list[dict[str, Any]]:
    return [e.body["detail"] for e in p.event_log.since(0) if e.detail_type == detail_type]


def test_a_request_launches_the_retriever_job_on_the_dataset_and_its_tokenizer(p: Platform) -> None:
    out = retriever.handle_request(p, _request())
    version = encoder_version(EncoderSettings.model_validate(SETTINGS), DATASET, TOKENIZER)
    assert out == {"retriever_version": version, "job": out["job"], "outcome": "launched"}
    (spec,) = p.jobs.jobs.values()  # type: ignore[attr-defined]
    art = p.settings.artifact_bucket
    assert spec.entry_point == "docllm.jobs.retriever_job" and spec.image == "train"
    assert spec.channels == {
        "dataset": f"s3://{art}/datasets/{DATASET}/",
        "tokenizer": f"s3://{art}/tokenizers/{TOKENIZER}/",
    }
    assert spec.hyperparameters["encoder_version"] == version and spec.hyperparameters["dim"] == "16"
    record = JobRecord.model_validate(p.state.get(JOBS_PK, spec.name))
    assert record.stage == "retriever" and record.context["retriever_version"] == version


def test_a_tokenizer_of_a_family_without_a_retriever_section_launches_nothing(p: Platform) -> None:
    trained = TokenizerTrained(
        tokenizer_version=TOKENIZER,
        dataset_version=DATASET,
        artifacts_uri="s3://a/t/",
        vocab_size=320,
        family="tiny-s3",
    )
    out = retriever.handle_request(p, to_bus(trained).to_wire())
    assert out["outcome"].startswith("skipped") and not p.jobs.jobs  # type: ignore[attr-defined]


def test_a_tokenizer_of_a_family_with_a_retriever_section_launches_its_job_outside_the_family_run(
    p: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docllm.training.families import FAMILIES_FILE_ENV, families_text

    text, _ = families_text()
    marker = "\n  tiny-s3:\n"
    assert marker in text
    families = tmp_path / "families.yaml"
    families.write_text(text.replace(marker, marker + "    retriever: {dim: 16, epochs: 1}\n", 1), encoding="utf-8")
    monkeypatch.setenv(FAMILIES_FILE_ENV, str(families))
    trained = TokenizerTrained(
        tokenizer_version=TOKENIZER,
        dataset_version=DATASET,
        artifacts_uri="s3://a/t/",
        vocab_size=320,
        family="tiny-s3",
        request_id="run-1",
    )
    out = retriever.handle_request(p, to_bus(trained).to_wire())
    assert out["outcome"] == "launched"
    (spec,) = p.jobs.jobs.values()  # type: ignore[attr-defined]
    record = JobRecord.model_validate(p.state.get(JOBS_PK, spec.name))
    # A failure of this side branch must not fail the family's pipeline run.
    assert record.context["family"] == "tiny-s3" and record.context["request_id"] == ""
    assert out["retriever_version"] == encoder_version(EncoderSettings.model_validate(SETTINGS), DATASET, TOKENIZER)


def test_an_unknown_tokenizer_fails_the_stage_and_launches_nothing(p: Platform) -> None:
    asked = RetrieverTrainingRequested(dataset_version=DATASET, tokenizer_version="tok-missing", request_id="req-2")
    out = retriever.handle_request(p, to_bus(asked).to_wire())
    assert out["outcome"] == "failed" and "tok-missing" in out["reason"]
    assert not p.jobs.jobs  # type: ignore[attr-defined]
    (failed,) = _published(p, "Stage Failed")
    assert failed["stage"] == "retriever" and failed["request_id"] == "req-2"


def test_an_approved_encoder_is_recorded_active_and_the_index_uses_its_verified_files(p: Platform) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    record = retriever.find_retriever(p, version)
    assert record is not None and record.status == "Approved"
    active = retriever.active_retriever(p)
    assert active is not None and active.version == version
    (event,) = _published(p, "Retriever Trained")
    assert event["approved"] is True and event["retriever_version"] == version and event["request_id"] == "req-1"

    hits = p.search.search("lifecycle rules cheaper storage", k=3)
    encoder = _index_encoder(p)
    assert hits and encoder is not None and encoder.version == version
    # Issue 18: every model file the index uses is traceable to a platform record.
    cache = retriever.encoder_cache_dir(p) / version
    for name in retriever.MODEL_FILES:
        assert hashlib.sha256((cache / name).read_bytes()).hexdigest() == record.files[name]
    tok = p.state.get(TOKENIZERS_PK, record.tokenizer_version)
    assert tok is not None and tok["model_sha256"] == record.files[TOKENIZER_FILE]
    assert tok["dataset_version"] == record.dataset_version == DATASET
    assert JobRecord.model_validate(p.state.get(JOBS_PK, record.job_name)).status == "Completed"


def test_a_rejected_encoder_is_recorded_but_the_index_keeps_bm25_alone(p: Platform) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=False)
    record = retriever.find_retriever(p, version)
    assert record is not None and record.status == "Rejected"
    assert retriever.active_retriever(p) is None
    p.search.search("lifecycle rules", k=3)
    assert _index_encoder(p) is None


def test_a_file_that_does_not_match_its_record_is_never_loaded(p: Platform) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    art = p.settings.artifact_bucket
    p.objects.put(art, f"retrievers/{version}/{ENCODER_FILE}", b"not the trained weights")
    hits = p.search.search("lifecycle rules", k=3)
    assert hits and _index_encoder(p) is None  # search goes on, by BM25 alone


def test_stored_vectors_spare_a_new_process_the_encoding(p: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    p.search.search("lifecycle rules", k=3)
    inner = _index(p)
    assert inner.stored_vectors(version) == len(DOCS)

    encoded: list[int] = []
    original = TextEncoder.encode

    def counting(self: TextEncoder, texts: Any) -> Any:
        encoded.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(TextEncoder, "encode", counting)
    again = _platform(Path(p.settings.data_dir or "."))
    assert again.search.search("lifecycle rules cheaper storage", k=3)
    assert _index_encoder(again) is not None
    assert encoded == [1]  # the query only: the chunks' vectors were read from the index file


def test_vectors_go_with_their_document(p: Platform) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    p.search.search("lifecycle rules", k=3)
    p.search.delete_document("s3/lifecycle.md")
    assert _index(p).stored_vectors(version) == len(DOCS) - 1
    # A document indexed while the encoder is active gets its vector in the same transaction.
    p.search.replace_document(
        "s3/tags.md",
        "v1",
        [IndexedChunk(chunk_id="t", doc_key="s3/tags.md", service="s3", title="Tags", heading_path=[], text="tags")],
    )
    assert _index(p).stored_vectors(version) == len(DOCS)


def _index(p: Platform) -> Any:
    return p.search  # no fault injection configured: the adapter itself


def _index_encoder(p: Platform) -> TextEncoder | None:
    return getattr(_index(p), "encoder", None)


def test_the_record_lists_and_json_round_trip(p: Platform) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    (listed,) = retriever.list_retrievers(p)
    assert listed.version == version and json.loads(listed.model_dump_json())["files"][CARD_FILE]


# --- the signed manifest (issue 18: every model file the index uses is traceable to a manifest) ---


def _stored(p: Platform, version: str) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """The stored manifest's bytes, its envelope and its statement."""
    body = p.compliance.get(retriever.manifest_key(version))
    envelope = json.loads(body)
    return body, envelope, json.loads(envelope_payload(envelope))


def _overwrite(p: Platform, version: str, body: bytes) -> None:
    """What someone with the local store's files in hand can do (Object Lock forbids it on AWS)."""
    path = Path(p.settings.data_dir or ".") / "compliance" / retriever.manifest_key(version)
    os.chmod(path, 0o600)
    path.write_bytes(body)


def _rerecord(p: Platform, version: str, **fields: Any) -> None:
    """Rewrite the retriever's state record (someone who can write the state)."""
    item = p.state.get(retriever.RETRIEVERS_PK, version)
    assert item is not None
    p.state.put(retriever.RETRIEVERS_PK, version, {**item, **fields})


def test_an_approved_retriever_has_a_signed_manifest_whose_subjects_are_its_files(p: Platform) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    record = retriever.find_retriever(p, version)
    assert record is not None and record.manifest_uri and record.manifest_sha256
    body, envelope, statement = _stored(p, version)
    assert record.manifest_uri == p.compliance.uri(f"retrievers/{version}.json")
    assert record.manifest_sha256 == sha256_hex(body)
    assert verify_envelope(envelope, p.signer.public_key())
    assert p.compliance.get(public_key_key(p.signer.key_id))  # published beside it, for auditors
    assert statement["predicate"]["buildDefinition"]["buildType"] == RETRIEVER_BUILD_TYPE
    assert subject_digests(statement) == record.files
    assert set(record.files) == set(retriever.MODEL_FILES)
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    (tokenizer,) = [d for d in deps if d["annotations"]["kind"] == KIND_TOKENIZER]
    assert tokenizer["digest"]["sha256"] == record.files[TOKENIZER_FILE]
    (dataset,) = [d for d in deps if d["annotations"]["kind"] == KIND_DATASET]
    assert dataset["annotations"]["version"] == DATASET
    run = statement["predicate"]["runDetails"]
    assert run["metadata"]["invocationId"] == record.job_name
    (decision,) = [b for b in run["byproducts"] if b["name"] == "decision"]
    assert decision["annotations"]["status"] == "Approved" and decision["annotations"]["reason"] == "test verdict"


def test_a_rejected_retriever_gets_no_manifest(p: Platform) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=False)
    record = retriever.find_retriever(p, version)
    assert record is not None and record.manifest_uri is None and record.manifest_sha256 is None
    assert p.compliance.list("retrievers/") == []


def test_a_redelivered_completion_issues_no_second_manifest(p: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    record = retriever.find_retriever(p, version)
    assert record is not None
    body, _, _ = _stored(p, version)
    (spec,) = p.jobs.jobs.values()  # type: ignore[attr-defined]
    assert jobs.handle_job_state(p, _state_change(spec.name))["outcome"] == "already handled"

    # An attempt that crashed after storing the manifest, before its commit: the retry adopts it, unsigned again.
    def no_second_signature(*_: Any, **__: Any) -> Any:
        raise AssertionError("signed again")

    monkeypatch.setattr(type(p.signer), "sign", no_second_signature)
    job = JobRecord.model_validate(p.state.get(JOBS_PK, spec.name))
    again = retriever.complete_job(p, job)
    (put, *_) = again.writes
    assert (put.item["manifest_uri"], put.item["manifest_sha256"]) == (record.manifest_uri, record.manifest_sha256)
    assert p.compliance.list("retrievers/") == [f"retrievers/{version}.json"]
    assert p.compliance.get(f"retrievers/{version}.json") == body


def test_an_approved_encoder_whose_stored_file_is_not_its_cards_gets_no_manifest_and_is_not_used(
    p: Platform,
) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True, stored_encoder=b"not the trained weights")
    assert retriever.find_retriever(p, version) is None and retriever.active_retriever(p) is None
    assert p.compliance.list("retrievers/") == []
    (failed,) = _published(p, "Stage Failed")
    assert failed["stage"] == "retriever" and failed["request_id"] == "req-1"


def test_another_statement_under_a_versions_key_is_a_permanent_error(p: Platform) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    _, _, statement = _stored(p, version)
    with pytest.raises(ManifestError, match="write-once"):
        retriever.issue_manifest(p, version, {**statement, "subject": statement["subject"][:1]})


def test_a_record_rewritten_to_match_a_forged_file_is_refused_by_its_manifest(
    p: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    forged = b"not the trained weights"
    p.objects.put(p.settings.artifact_bucket, f"retrievers/{version}/{ENCODER_FILE}", forged)
    record = retriever.find_retriever(p, version)
    assert record is not None
    _rerecord(p, version, files={**record.files, ENCODER_FILE: hashlib.sha256(forged).hexdigest()})
    with caplog.at_level(logging.ERROR, logger=retriever.__name__):
        hits = p.search.search("lifecycle rules", k=3)
    assert hits and _index_encoder(p) is None  # BM25 alone
    assert "not traceable to a signed manifest" in caplog.text and ENCODER_FILE in caplog.text


Tamper = Callable[[dict[str, Any], dict[str, Any], Path], dict[str, Any]]


def _unsigned(envelope: dict[str, Any], statement: dict[str, Any], elsewhere: Path) -> dict[str, Any]:
    return {**envelope, "signatures": []}


def _signed_by_another_key(envelope: dict[str, Any], statement: dict[str, Any], elsewhere: Path) -> dict[str, Any]:
    return LocalKeySigner(elsewhere / "someone-elses-keys").sign(canonical_json(statement))


def _altered_after_signing(envelope: dict[str, Any], statement: dict[str, Any], elsewhere: Path) -> dict[str, Any]:
    # A subject's digest changed, the platform's signature kept.
    altered = {**statement, "subject": [{**s, "digest": {"sha256": "0" * 64}} for s in statement["subject"]]}
    return {**envelope, "payload": base64.b64encode(canonical_json(altered)).decode()}


@pytest.mark.parametrize(
    ("tamper", "why"),
    [(_unsigned, "signature"), (_signed_by_another_key, "unknown_key"), (_altered_after_signing, "signature")],
)
def test_a_manifest_not_signed_by_the_platform_makes_the_index_refuse_the_encoder(
    p: Platform, tmp_path: Path, caplog: pytest.LogCaptureFixture, tamper: Tamper, why: str
) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    _, envelope, statement = _stored(p, version)
    body = canonical_json(tamper(envelope, statement, tmp_path))
    _overwrite(p, version, body)
    _rerecord(p, version, manifest_sha256=sha256_hex(body))  # the record made to agree: the signature must not
    with caplog.at_level(logging.ERROR, logger=retriever.__name__):
        assert p.search.search("lifecycle rules", k=3) and _index_encoder(p) is None
    assert f"{why}: retrievers/{version}.json" in caplog.text


def test_a_manifest_that_is_not_the_recorded_one_is_refused(p: Platform) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    _rerecord(p, version, manifest_sha256="0" * 64)
    assert p.search.search("lifecycle rules", k=3) and _index_encoder(p) is None


def test_an_approved_record_without_a_manifest_is_never_loaded(p: Platform) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    _rerecord(p, version, manifest_uri=None, manifest_sha256=None)  # as recorded before manifests were issued
    assert p.search.search("lifecycle rules", k=3) and _index_encoder(p) is None


def _cli(p: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    monkeypatch.setattr(retrieval_cmds, "running_platform", lambda args: (p, {}))
    capsys.readouterr()
    code = main(["--data-dir", str(p.settings.data_dir), *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _record_dataset(p: Platform) -> str:
    """The dataset's record and manifest.json, as the dataset stage writes them; the manifest's uri."""
    art = p.settings.artifact_bucket
    p.objects.put(art, f"datasets/{DATASET}/manifest.json", b'{"version": "%s"}' % DATASET.encode())
    uri = f"s3://{art}/datasets/{DATASET}/manifest.json"
    summary = DatasetSummary(
        version=DATASET, created_at="2025-01-01T00:00:00Z", manifest_uri=uri, documents=3, chunks=3, token_estimate=9
    )
    p.state.put(DATASETS_PK, DATASET, summary.model_dump(mode="json"))
    return uri


def test_retriever_verify_passes_then_names_a_tampered_file(
    p: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset_manifest = _record_dataset(p)
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    record = retriever.find_retriever(p, version)
    assert record is not None
    code, shown = _cli(p, monkeypatch, capsys, "retriever", "show", version)
    assert code == 0 and (shown["manifest_uri"], shown["manifest_sha256"]) == (
        record.manifest_uri,
        record.manifest_sha256,
    )
    code, report = _cli(p, monkeypatch, capsys, "retriever", "verify", version)
    assert code == 0 and report["ok"] and report["mismatches"] == [], report
    assert report["key_id"] == p.signer.key_id and report["manifest_sha256"] == record.manifest_sha256
    _, _, statement = _stored(p, version)
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    (dataset,) = [d for d in deps if d["annotations"]["kind"] == KIND_DATASET]
    assert dataset["uri"] == dataset_manifest and dataset["digest"]["sha256"]
    assert report["checked"] == {"model": 3, "tokenizer": 1, "dataset-manifest": 1, "byproduct": 1}

    p.objects.put(p.settings.artifact_bucket, f"retrievers/{version}/{ENCODER_FILE}", b"not the trained weights")
    code, report = _cli(p, monkeypatch, capsys, "retriever", "verify", version)
    assert code == EXIT_FAILED and not report["ok"]
    (mismatch,) = report["mismatches"]
    assert mismatch["kind"] == "digest" and mismatch["subject"].endswith(f"{version}/{ENCODER_FILE}")
    assert mismatch["expected"] == record.files[ENCODER_FILE]


def test_retriever_verify_names_an_altered_manifest(
    p: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=True)
    _, envelope, statement = _stored(p, version)
    _overwrite(p, version, canonical_json(_altered_after_signing(envelope, statement, tmp_path)))
    code, report = _cli(p, monkeypatch, capsys, "retriever", "verify", version)
    assert code == EXIT_FAILED
    assert {m["kind"] for m in report["mismatches"]} >= {"state", "signature"}


def test_retriever_verify_of_a_rejected_or_unknown_retriever_is_not_found(
    p: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    retriever.handle_request(p, _request())
    version = _complete(p, approved=False)
    code, body = _cli(p, monkeypatch, capsys, "retriever", "verify", version)
    assert code == EXIT_NOT_FOUND and "rejected" in body["error"]
    code, body = _cli(p, monkeypatch, capsys, "retriever", "verify", "enc-no-such")
    assert code == EXIT_NOT_FOUND
