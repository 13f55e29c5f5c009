"""A model version's lineage, from the records the stages keep: documents → dataset version →
tokenizer version → shards → training job → model → evaluations → decisions → manifests.

Read-only; what ``docllm lineage`` prints as a tree and the dashboard will draw.
"""

from __future__ import annotations

from typing import Any

from docllm.bootstrap import Platform
from docllm.dataset.versions import load_manifest
from docllm.exceptions import NotFoundError
from docllm.records import JOBS_PK
from docllm.service_layer.evaluate import EVALUATIONS_PK
from docllm.service_layer.jobs import MODELS_PK, SHARDS_PK
from docllm.tokenizer.artifacts import find_tokenizer


def _job(p: Platform, name: str | None) -> dict[str, Any] | None:
    if not name:
        return None
    item = p.state.get(JOBS_PK, name)
    if item is None:
        return {"name": name, "status": "unknown"}
    return {k: item.get(k) for k in ("name", "stage", "status", "output_uri", "created_at", "updated_at")}


def _tokenizer_job(p: Platform, stage: str, **context: str) -> str | None:
    """The job of ``stage`` whose recorded inputs match ``context`` (the newest that completed)."""
    found = [
        item
        for _, item in p.state.query(JOBS_PK)
        if item.get("stage") == stage
        and item.get("status") == "Completed"
        and all(item.get("context", {}).get(k) == v for k, v in context.items())
    ]
    return max(found, key=lambda i: i.get("updated_at", ""))["name"] if found else None


def lineage(p: Platform, model_version: str) -> dict[str, Any]:
    from docllm.service_layer.deploy import deployments
    from docllm.service_layer.gate import decisions

    model = p.state.get(MODELS_PK, model_version)
    if model is None:
        raise NotFoundError(f"no model {model_version!r}")
    dataset_version, tokenizer_version = model.get("dataset_version", ""), model.get("tokenizer_version", "")
    try:
        manifest = load_manifest(p.objects, p.settings.artifact_bucket, dataset_version)
        documents = [
            {"doc_key": d.doc_key, "sha256": d.sha256, "split": d.split, "version_id": getattr(d, "version_id", None)}
            for d in manifest.documents
        ]
        dataset: dict[str, Any] = {
            "version": dataset_version,
            "documents": manifest.stats.documents,
            "chunks": manifest.stats.chunks,
            "created_at": manifest.created_at,
        }
    except NotFoundError:
        documents, dataset = [], {"version": dataset_version, "missing": True}
    tok = find_tokenizer(p.state, tokenizer_version)
    shards_key = model.get("shards_key") or f"{dataset_version}/{tokenizer_version}"
    shards = p.state.get(SHARDS_PK, shards_key) or {}
    evaluations = sorted(
        (
            {k: i.get(k) for k in ("evaluation_id", "completed_at", "report_uri", "report_sha256", "metrics")}
            for _, i in p.state.query(EVALUATIONS_PK)
            if i.get("model_version") == model_version
        ),
        key=lambda e: e.get("completed_at") or "",
    )
    try:
        package: dict[str, Any] | None = p.registry.get(model_version).model_dump(mode="json")
    except NotFoundError:
        package = None
    return {
        "model_version": model_version,
        "documents": documents,
        "dataset": dataset,
        "tokenizer": {
            "version": tokenizer_version,
            "artifacts_uri": tok.artifacts_uri if tok else None,
            "vocab_size": tok.vocab_size if tok else None,
            "job": _job(p, _tokenizer_job(p, "tokenizer", tokenizer_version=tokenizer_version)),
        },
        "shards": {
            "uri": shards.get("shards_uri"),
            "tokens": shards.get("tokens"),
            "job": _job(
                p,
                _tokenizer_job(p, "shards", dataset_version=dataset_version, tokenizer_version=tokenizer_version),
            ),
        },
        "training": {"job": _job(p, model.get("job")), "family": model.get("family"), "metrics": model.get("metrics")},
        "model": {"export_uri": model.get("export_uri"), "registry": package},
        "evaluations": evaluations,
        "decisions": [
            {
                k: v
                for k, v in d.model_dump(mode="json").items()
                if k in ("decision_id", "status", "decided_by", "override", "at", "manifest_uri", "reasons")
            }
            for d in decisions(p, model_version)
        ],
        "deployments": [
            {k: d.get(k) for k in ("target", "endpoint", "previous_version", "started_at", "finished_at", "status")}
            for d in deployments(p, model_version)
        ],
    }
