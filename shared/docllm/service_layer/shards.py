"""Shards stage: encode a dataset version with a tokenizer into packed token shards."""

from __future__ import annotations

from typing import Any

from docllm.bootstrap import Platform
from docllm.events.contracts import DatasetTokenized, TokenizerTrained, parse_detail, to_bus
from docllm.service_layer.jobs import SHARDS_PK, digest, job_name, launch


def handle_tokenizer_trained(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    from docllm.dataset.versions import load_manifest
    from docllm.tokenizer.settings import tokenize_job_spec

    trained = parse_detail(raw, TokenizerTrained)
    key = f"{trained.dataset_version}/{trained.tokenizer_version}"
    existing = p.state.get(SHARDS_PK, key)
    if existing is not None:
        p.bus.publish(
            [
                to_bus(
                    DatasetTokenized(
                        dataset_version=trained.dataset_version,
                        tokenizer_version=trained.tokenizer_version,
                        shards_uri=existing["shards_uri"],
                        tokens=existing["tokens"],
                        family=trained.family,
                        train_after=trained.train_after,
                        request_id=trained.request_id,
                    )
                )
            ]
        )
        return {"shards": key, "outcome": "reused"}
    manifest = load_manifest(p.objects, p.settings.artifact_bucket, trained.dataset_version)
    name = job_name("shards", digest(trained.dataset_version, trained.tokenizer_version), p)
    spec = tokenize_job_spec(
        manifest=manifest,
        tokenizer_version=trained.tokenizer_version,
        artifact_bucket=p.settings.artifact_bucket,
        job_name=name,
    )
    outcome = launch(
        p,
        spec,
        "tokenize",
        {
            "dataset_version": trained.dataset_version,
            "tokenizer_version": trained.tokenizer_version,
            "tokenizer_uri": trained.artifacts_uri,
            "family": trained.family or "",
            "train_after": str(trained.train_after).lower(),
            "instance_count": str(spec.instance_count),
            "request_id": trained.request_id or "",
        },
    )
    return {"shards": key, "job": name, "outcome": outcome}
