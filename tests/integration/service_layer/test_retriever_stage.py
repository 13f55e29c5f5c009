"""The retriever stage: a request launches the job; its completion records the encoder with the gate's
verdict; the platform's index then uses the approved encoder, read from files checked against the
platform's records, with its chunk vectors stored so a new process does not encode the corpus again.

No torch here: a recording runner stands in for SageMaker and the test writes what the job would
(``tests/integration/search/test_retriever_job.py`` runs the job itself).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from docllm.bootstrap import Platform
from docllm.events.contracts import RetrieverTrainingRequested, TokenizerTrained, to_bus
from docllm.ports.search import IndexedChunk
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


def _complete(p: Platform, *, approved: bool) -> str:
    """Write what the job writes under its output prefix, then deliver its "Completed" state change."""
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
    for name, data in files.items():
        p.objects.put(art, prefix + name, data)
    state_change = {
        "version": "0",
        "id": "e-1",
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2025-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"TrainingJobName": spec.name, "TrainingJobStatus": "Completed"},
    }
    out = jobs.handle_job_state(p, state_change)
    assert out["outcome"] == "completed" and out["next"] == "Retriever Trained", out
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
