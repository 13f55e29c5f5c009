"""A local platform holding what the stages would have recorded for one trained, evaluated model.

No training happens: the records and artefacts are written by hand in the shapes the stages
write them (documents in the raw bucket, a dataset manifest, tokenizer files, shard files, a
training job's result.json and Hugging Face export, an evaluation report), which is all a
compliance manifest is assembled from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from docllm.adapters.local.objects import LocalObjectStore
from docllm.bootstrap import Platform
from docllm.dataset.versions import DATASETS_PK, DatasetDocument, DatasetManifest, DatasetStats, summarize
from docllm.events.contracts import EvaluationCompleted
from docllm.faults import unwrap
from docllm.manifest.inputs import DecisionRecord
from docllm.records import JOBS_PK, JobRecord
from docllm.service_layer import manifest as manifests
from docllm.service_layer.jobs import MODELS_PK, SHARDS_PK
from docllm.settings import Settings
from docllm.tokenizer.artifacts import TOKENIZERS_PK, TokenizerSummary
from tests.conftest import REPO

FAMILY = "tiny-s3"
DATASET = "ds-0123456789abcdef"
TOKENIZER = "tok-0123456789abcdef"
DOCUMENTS = {
    "s3/UsingBucket.md": b"# Using a bucket\n\nA bucket holds objects. Limit: 100 buckets.\n",
    "s3/Versioning.md": b"# Versioning\n\nPutObject adds a version; GetObject ?versionId= reads it.\n",
    "ec2/Instances.md": b"# Instances\n\nRunInstances starts instances.\n",
}


@dataclass
class Seeded:
    """Names of what was seeded, for the tests to mutate."""

    p: Platform
    model_versions: list[str] = field(default_factory=list)
    doc_versions: dict[str, str] = field(default_factory=dict)

    @property
    def art(self) -> str:
        return self.p.settings.artifact_bucket

    @property
    def raw(self) -> str:
        return self.p.settings.raw_bucket


def _put(p: Platform, bucket: str, key: str, body: bytes) -> str:
    info = p.objects.put(bucket, key, body)
    assert info.version_id is not None
    return info.version_id


def _job(p: Platform, name: str, stage: str, output_uri: str, **context: str) -> None:
    record = JobRecord(name=name, stage=stage, status="Completed", output_uri=output_uri, context=context)
    p.state.put(JOBS_PK, name, record.model_dump(mode="json"))


def _provenance(job: str) -> dict[str, Any]:
    return {
        "code": {"repository": "https://example.com/docllm.git", "commit": "a" * 40, "dirty": False},
        "environment": {
            "image_digest": None,
            "lock_sha256": hashlib.sha256(job.encode()).hexdigest(),
            "python": "3.11.9",
            "libraries": {"torch": "2.13.0", "numpy": "2.1.0"},
        },
    }


def seed_inputs(p: Platform) -> Seeded:
    """Documents, dataset, tokenizer and shards: what every model of the tests shares."""
    s = Seeded(p)
    art = s.art
    docs = []
    for i, (key, body) in enumerate(sorted(DOCUMENTS.items())):
        s.doc_versions[key] = _put(p, s.raw, key, body)
        docs.append(
            DatasetDocument(
                doc_key=key,
                sha256=hashlib.sha256(body).hexdigest(),
                version_id=s.doc_versions[key],
                service=key.split("/")[0],
                split=("train", "validation", "test")[i % 3],
                chunk_ids=[f"c{i}"],
                token_estimate=10,
            )
        )
    ds = DatasetManifest(
        version=DATASET, created_at="2025-01-01T00:00:00.000+00:00", services=[], documents=docs, stats=DatasetStats()
    )
    ds_key = f"datasets/{DATASET}/manifest.json"
    _put(p, art, ds_key, ds.model_dump_json(indent=1).encode())
    p.state.put(DATASETS_PK, DATASET, summarize(ds, f"s3://{art}/{ds_key}").model_dump(mode="json"))

    tok_uri = f"s3://{art}/tokenizers/{TOKENIZER}/"
    for name, body in {
        "tokenizer.model": b"\x0a\x0bsentencepiece-model-bytes" * 10,
        "tokenizer.json": b'{"model": {"type": "Unigram"}}',
        "card.json": b'{"version": "tok"}',
        "result.json": b'{"version": "tok"}',
    }.items():
        _put(p, art, f"tokenizers/{TOKENIZER}/{name}", body)
    summary = TokenizerSummary(
        version=TOKENIZER,
        dataset_version=DATASET,
        artifacts_uri=tok_uri,
        vocab_size=512,
        model_type="unigram",
        model_sha256="0" * 64,
    )
    p.state.put(TOKENIZERS_PK, TOKENIZER, summary.model_dump(mode="json"))
    _job(p, "docllm-dev-tokenizer-0123456789abcdef-1", "tokenizer", tok_uri, dataset_version=DATASET)

    shards_uri = f"s3://{art}/shards/{DATASET}/{TOKENIZER}/"
    for name, body in {
        "train/part-000/shard-00000.bin": bytes(range(256)) * 40,
        "train/part-000/index.json": b'{"format": 1}',
        "test/part-000/shard-00000.bin": bytes(range(200)),
        "result.json": b'{"tokens": {"train": 5120}}',
    }.items():
        _put(p, art, f"shards/{DATASET}/{TOKENIZER}/{name}", body)
    p.state.put(
        SHARDS_PK,
        f"{DATASET}/{TOKENIZER}",
        {
            "shards_uri": shards_uri,
            "tokens": {"train": 5120},
            "dataset_version": DATASET,
            "tokenizer_version": TOKENIZER,
        },
    )
    _job(p, "docllm-dev-shards-0123456789abcdef-1", "shards", shards_uri, dataset_version=DATASET)
    return s


def seed_model(s: Seeded, n: int) -> str:
    """Trained model ``n`` (training job, result.json, export) and its evaluation; its version."""
    p, art = s.p, s.art
    version = f"{FAMILY}-2025010{n}-{n:04d}"
    job = f"docllm-dev-train-{FAMILY}-{n:016d}-1"
    out = f"models/{job}/"
    result = {
        "model_version": version,
        "family": FAMILY,
        "dataset_version": DATASET,
        "tokenizer_version": TOKENIZER,
        "variant": "llama",
        "hf_architecture": "LlamaForCausalLM",
        "n_params": 1000,
        "final_train_loss": 3.2,
        "final_val_loss": float("nan") if n == 99 else 3.4,
        "best_val_loss": 3.3,
        "tokens_seen": 100000,
        "steps": 50,
        "elapsed_s": 12.5,
        "tokens_per_s": 8000.0,
        "world_size": 1,
        "device": "cpu",
        "model_config": {"n_layer": 2, "n_head": 2, "n_embd": 64, "vocab_size": 512},
        "train_config": {"lr": 3e-4, "batch_size": 8, "seed": n},
        "provenance": _provenance(job),
    }
    _put(p, art, out + "result.json", json.dumps(result).encode())
    for name, body in {
        "hf/config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "n": n}).encode(),
        "hf/model.safetensors": bytes((i * 7 + n) % 256 for i in range(200_000)),
        "hf/tokenizer.json": b'{"model": {"type": "Unigram"}}',
    }.items():
        _put(p, art, out + name, body)
    _job(p, job, "train", f"s3://{art}/{out}", family=FAMILY, dataset_version=DATASET, tokenizer_version=TOKENIZER)
    p.state.put(
        MODELS_PK,
        version,
        {
            "version": version,
            "job": job,
            "export_uri": f"s3://{art}/{out}hf/",
            "metrics": {"final_val_loss": 3.4, "steps": 50.0},
            "family": FAMILY,
            "dataset_version": DATASET,
            "tokenizer_version": TOKENIZER,
        },
    )
    ev = f"docllm-dev-evaluate-{n:016d}-1"
    report = json.dumps({"perplexity": 30.1, "model_version": version}).encode()
    _put(p, art, f"evaluations/{ev}/report.json", report)
    _put(p, art, f"evaluations/{ev}/report.html", b"<html><body>plots</body></html>")
    _put(p, art, f"evaluations/{ev}/result.json", json.dumps({"provenance": _provenance(ev)}).encode())
    _job(p, ev, "evaluate", f"s3://{art}/evaluations/{ev}/", model_version=version)
    p.state.put(
        manifests.EVALUATIONS_PK,
        ev,
        {
            "evaluation_id": ev,
            "model_version": version,
            "report_uri": f"s3://{art}/evaluations/{ev}/report.json",
            "report_sha256": hashlib.sha256(report).hexdigest(),
            "html_uri": f"s3://{art}/evaluations/{ev}/report.html",
            "metrics": {"perplexity": 30.1, "qa_exact_match": 0.4},
            "job": ev,
        },
    )
    s.model_versions.append(version)
    return version


#: Metrics of an evaluation the gate approves (every rule of ``gates.yaml`` passes).
PASSING_METRICS = {"heldout_loss": 3.1, "unigram_val_loss": 6.0, "perplexity": 22.2, "qa_token_f1": 0.2}


def evaluation_completed(
    p: Platform, model_version: str, request_id: str, metrics: dict[str, float] = PASSING_METRICS
) -> EvaluationCompleted:
    """ "Evaluation Completed" for the evaluation :func:`seed_model` recorded for ``model_version``."""
    evaluation = next(
        item for _, item in p.state.query(manifests.EVALUATIONS_PK) if item["model_version"] == model_version
    )
    return EvaluationCompleted(
        model_version=model_version,
        family=FAMILY,
        evaluation_id=evaluation["evaluation_id"],
        report_uri=evaluation["report_uri"],
        report_sha256=evaluation["report_sha256"],
        html_uri=evaluation["html_uri"],
        metrics=metrics,
        request_id=request_id,
    )


def decision(model_version: str, decision_id: str, status: str = "Approved", **extra: Any) -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id,
        model_version=model_version,
        family=FAMILY,
        status=status,
        decided_by=extra.pop("decided_by", "gate"),
        override=extra.pop("override", False),
        reasons=extra.pop("reasons", ["perplexity 30.1 <= 60 (threshold)"]),
        at="2025-01-02T00:00:00.000+00:00",
        **extra,
    )


def approve(p: Platform, model_version: str, decision_id: str, **extra: Any) -> manifests.IssuedManifest:
    """Gather, issue, commit the chain record (what the gate does, minus its event)."""
    issued = manifests.issue(p, manifests.gather(p, model_version, decision(model_version, decision_id, **extra)))
    p.state.transact(issued.writes)
    return issued


def blob_path(p: Platform, bucket: str, key: str, version_id: str) -> Path:
    """The file of one object version in the local object store (to change bytes in place)."""
    store = unwrap(p.objects)
    assert isinstance(store, LocalObjectStore)
    return store._blob_path(bucket, key, version_id)


@pytest.fixture
def p(tmp_path: Path) -> Platform:
    return Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path / "data")}),
        template=REPO / "template.yaml",
    )


@pytest.fixture
def seeded(p: Platform) -> Seeded:
    s = seed_inputs(p)
    seed_model(s, 1)
    return s
