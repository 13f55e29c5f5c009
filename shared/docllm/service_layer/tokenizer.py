"""Tokenizer stage: train (or reuse) the SentencePiece tokenizer of a dataset version."""

from __future__ import annotations

from typing import Any

from docllm.bootstrap import Platform
from docllm.events.contracts import DatasetBuilt, TokenizerTrained, parse_detail, to_bus
from docllm.service_layer.jobs import job_name, launch


def handle_dataset_built(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    from docllm.dataset.versions import load_manifest
    from docllm.tokenizer.artifacts import find_tokenizer
    from docllm.tokenizer.settings import TokenizerSettings, tokenizer_job_spec, tokenizer_version

    built = parse_detail(raw, DatasetBuilt)
    manifest = load_manifest(p.objects, p.settings.artifact_bucket, built.dataset_version)
    settings = TokenizerSettings()
    if built.family:
        from docllm.training.families import load_families

        # A family may ask for its own vocabulary (a tiny CPU model wants a small one).
        overrides = load_families()[built.family].tokenizer
        settings = TokenizerSettings.model_validate({**settings.model_dump(), **overrides})
    version = tokenizer_version(settings, manifest)
    existing = find_tokenizer(p.state, version)
    if existing is not None:
        p.bus.publish(
            [
                to_bus(
                    TokenizerTrained(
                        tokenizer_version=version,
                        dataset_version=built.dataset_version,
                        artifacts_uri=existing.artifacts_uri,
                        vocab_size=existing.vocab_size,
                        reused=True,
                        family=built.family,
                        train_after=built.train_after,
                        request_id=built.request_id,
                    )
                )
            ]
        )
        return {"tokenizer_version": version, "outcome": "reused"}
    name = job_name("tok", version, p)
    spec = tokenizer_job_spec(
        manifest=manifest, settings=settings, artifact_bucket=p.settings.artifact_bucket, job_name=name
    )
    outcome = launch(
        p,
        spec,
        "tokenizer",
        {
            "dataset_version": built.dataset_version,
            "tokenizer_version": version,
            "family": built.family or "",
            "train_after": str(built.train_after).lower(),
            "request_id": built.request_id or "",
        },
    )
    return {"tokenizer_version": version, "job": name, "outcome": outcome}
