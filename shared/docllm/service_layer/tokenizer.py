"""Tokenizer stage: train (or reuse) the SentencePiece tokenizer of a dataset version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from docllm.bootstrap import Platform
from docllm.events.contracts import DatasetBuilt, TokenizerTrained, parse_detail, to_bus
from docllm.ports.jobs import JobSpec
from docllm.ports.state import Put
from docllm.records import JobRecord
from docllm.service_layer.jobs import Completion, job_name, launch, read_result

if TYPE_CHECKING:
    from docllm.dataset.versions import DatasetManifest
    from docllm.tokenizer.settings import TokenizerSettings

STAGE = "tokenizer"


def tokenizer_trained(
    context: dict[str, str], *, artifacts_uri: str, vocab_size: int, reused: bool = False
) -> TokenizerTrained:
    """The stage's event, from the inputs it was asked with (a job's context, or a request's)."""
    return TokenizerTrained(
        tokenizer_version=context["tokenizer_version"],
        dataset_version=context["dataset_version"],
        artifacts_uri=artifacts_uri,
        vocab_size=vocab_size,
        reused=reused,
        family=context.get("family") or None,
        train_after=context.get("train_after") == "true",
        request_id=context.get("request_id") or None,
    )


def tokenizer_job_spec(
    *, manifest: DatasetManifest, settings: TokenizerSettings, artifact_bucket: str, job_name: str
) -> JobSpec:
    """The job that trains a tokenizer on a dataset version's train split.

    Example
    -------
    >>> spec = tokenizer_job_spec(manifest=m, settings=TokenizerSettings(),
    ...                           artifact_bucket="art", job_name="tok-1")  # doctest: +SKIP
    >>> spec.hyperparameters["output_uri"]                                   # doctest: +SKIP
    's3://art/tokenizers/tok-…/'
    """
    from docllm.dataset.versions import dataset_prefix
    from docllm.tokenizer.settings import tokenizer_prefix, tokenizer_version

    version = tokenizer_version(settings, manifest)
    output = tokenizer_prefix(artifact_bucket, version)
    return JobSpec(
        name=job_name,
        image="tokenizer",
        entry_point="docllm.jobs.tokenizer_job",
        hyperparameters={
            **settings.to_hyperparameters(),
            "output_uri": output,
            "dataset_version": manifest.version,
            "tokenizer_version": version,
        },
        channels={"dataset": dataset_prefix(artifact_bucket, manifest.version)},
        output_uri=output,
        instance_type="ml.m5.2xlarge",
        tags={"docllm-stage": STAGE, "docllm-dataset": manifest.version},
    )


def handle_dataset_built(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    from docllm.dataset.versions import load_manifest
    from docllm.tokenizer.artifacts import find_tokenizer
    from docllm.tokenizer.settings import TokenizerSettings, tokenizer_version

    built = parse_detail(raw, DatasetBuilt)
    manifest = load_manifest(p.objects, p.settings.artifact_bucket, built.dataset_version)
    settings = TokenizerSettings()
    if built.family:
        from docllm.training.families import family

        # A family may ask for its own vocabulary (a tiny CPU model wants a small one).
        overrides = family(built.family).tokenizer
        settings = TokenizerSettings.model_validate({**settings.model_dump(), **overrides})
    version = tokenizer_version(settings, manifest)
    context = {
        "dataset_version": built.dataset_version,
        "tokenizer_version": version,
        "family": built.family or "",
        "train_after": str(built.train_after).lower(),
        "request_id": built.request_id or "",
    }
    existing = find_tokenizer(p.state, version)
    if existing is not None:
        # Nothing changes state here: publishing on every delivery is safe (consumers are idempotent).
        reused = tokenizer_trained(
            context, artifacts_uri=existing.artifacts_uri, vocab_size=existing.vocab_size, reused=True
        )
        p.bus.publish([to_bus(reused)])
        return {"tokenizer_version": version, "outcome": "reused"}
    name = job_name(STAGE, version, p)
    spec = tokenizer_job_spec(
        manifest=manifest, settings=settings, artifact_bucket=p.settings.artifact_bucket, job_name=name
    )
    outcome = launch(p, spec, STAGE, context)
    return {"tokenizer_version": version, "job": name, "outcome": outcome}


def complete_job(p: Platform, record: JobRecord) -> Completion:
    """The tokenizer job finished: remember the tokenizer (later builds reuse it) and announce it."""
    from docllm.tokenizer.artifacts import TOKENIZERS_PK, TokenizerResult, summarize_tokenizer

    result = TokenizerResult.model_validate(read_result(p, record.output_uri))
    summary = summarize_tokenizer(result, record.output_uri)
    return Completion(
        event=tokenizer_trained(record.context, artifacts_uri=record.output_uri, vocab_size=result.vocab_size),
        writes=[Put(TOKENIZERS_PK, summary.version, summary.model_dump(mode="json"))],
    )
