"""Shards stage: encode a dataset version with a tokenizer into packed token shards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from docllm.bootstrap import Platform
from docllm.events.contracts import ShardsBuilt, TokenizerTrained, parse_detail, to_bus
from docllm.ports.jobs import JobSpec
from docllm.ports.state import Put
from docllm.records import JobRecord
from docllm.service_layer.jobs import SHARDS_PK, Completion, digest, job_name, launch, read_result

if TYPE_CHECKING:
    from docllm.dataset.versions import DatasetManifest

STAGE = "shards"


def shards_built(context: dict[str, str], *, shards_uri: str, tokens: dict[str, int]) -> ShardsBuilt:
    """The stage's event, from the inputs it was asked with (a job's context, or a request's)."""
    return ShardsBuilt(
        dataset_version=context["dataset_version"],
        tokenizer_version=context["tokenizer_version"],
        shards_uri=shards_uri,
        tokens=tokens,
        family=context.get("family") or None,
        train_after=context.get("train_after") == "true",
        request_id=context.get("request_id") or None,
    )


def shards_job_spec(
    *,
    manifest: DatasetManifest,
    tokenizer_version: str,
    artifact_bucket: str,
    job_name: str,
    instance_count: int = 1,
    shard_tokens: int = 2**24,
) -> JobSpec:
    """The job that encodes a dataset version into token shards.

    With ``instance_count > 1`` every host takes its slice of documents (see
    ``docllm.jobs.shards_job``) and writes ``<split>/part-<host>/``; the
    completion handler then calls :func:`docllm.dataset.shards_output.finalize_shards_output`.
    """
    from docllm.dataset.shards_output import shards_prefix
    from docllm.dataset.versions import dataset_prefix
    from docllm.tokenizer.settings import tokenizer_prefix

    output = shards_prefix(artifact_bucket, manifest.version, tokenizer_version)
    return JobSpec(
        name=job_name,
        image="tokenizer",
        entry_point="docllm.jobs.shards_job",
        hyperparameters={
            "output_uri": output,
            "dataset_version": manifest.version,
            "tokenizer_version": tokenizer_version,
            "shard_tokens": str(shard_tokens),
        },
        channels={
            "dataset": dataset_prefix(artifact_bucket, manifest.version),
            "tokenizer": tokenizer_prefix(artifact_bucket, tokenizer_version),
        },
        output_uri=output,
        instance_count=instance_count,
        tags={"docllm-stage": STAGE, "docllm-dataset": manifest.version},
    )


def handle_tokenizer_trained(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    from docllm.dataset.versions import load_manifest

    trained = parse_detail(raw, TokenizerTrained)
    key = f"{trained.dataset_version}/{trained.tokenizer_version}"
    context = {
        "dataset_version": trained.dataset_version,
        "tokenizer_version": trained.tokenizer_version,
        "tokenizer_uri": trained.artifacts_uri,
        "family": trained.family or "",
        "train_after": str(trained.train_after).lower(),
        "request_id": trained.request_id or "",
    }
    existing = p.state.get(SHARDS_PK, key)
    if existing is not None:
        # Nothing changes state here: publishing on every delivery is safe (consumers are idempotent).
        p.bus.publish([to_bus(shards_built(context, shards_uri=existing["shards_uri"], tokens=existing["tokens"]))])
        return {"shards": key, "outcome": "reused"}
    manifest = load_manifest(p.objects, p.settings.artifact_bucket, trained.dataset_version)
    name = job_name(STAGE, digest(trained.dataset_version, trained.tokenizer_version), p)
    spec = shards_job_spec(
        manifest=manifest,
        tokenizer_version=trained.tokenizer_version,
        artifact_bucket=p.settings.artifact_bucket,
        job_name=name,
    )
    outcome = launch(p, spec, STAGE, {**context, "instance_count": str(spec.instance_count)})
    return {"shards": key, "job": name, "outcome": outcome}


def complete_job(p: Platform, record: JobRecord) -> Completion:
    """The shards job finished: merge the hosts' part results, remember the shards, announce them."""
    from docllm.dataset.shards_output import finalize_shards_output

    # A multi-host job has one part result per host; none of them can know when the others
    # finished, so the merge happens here.
    parts = int(record.context.get("instance_count", "1"))
    finalize_shards_output(p.objects, record.output_uri, expected_parts=parts)
    result = read_result(p, record.output_uri)
    tokens = {str(k): int(v) for k, v in (result.get("tokens") or {}).items()}
    ctx = record.context
    item = {"shards_uri": record.output_uri, "tokens": tokens, **ctx}
    return Completion(
        event=shards_built(ctx, shards_uri=record.output_uri, tokens=tokens),
        writes=[Put(SHARDS_PK, f"{ctx['dataset_version']}/{ctx['tokenizer_version']}", item)],
    )
