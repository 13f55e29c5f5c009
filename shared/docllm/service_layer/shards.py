"""Shards stage: encode a dataset version with a tokenizer into packed token shards.

Shards are cached in state (``pk="shards"``) and shared by every family that trains on the same
dataset and tokenizer, under :func:`shards_key`. A family that answer-tunes gets other shards (its
train stream mixes in examples built for its context length), so its key and its output prefix end
with the setting's tag (:func:`shards_variant`); families without answer tuning keep the plain key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from docllm.bootstrap import Platform
from docllm.events.contracts import ShardsBuilt, TokenizerTrained, parse_detail, to_bus
from docllm.ports.jobs import JobSpec
from docllm.ports.state import Put
from docllm.records import JobRecord
from docllm.service_layer.jobs import SHARDS_PK, Completion, digest, job_name, launch, read_result

if TYPE_CHECKING:
    from docllm.answers.tuning import AnswerTuning
    from docllm.dataset.versions import DatasetManifest
    from docllm.training.families import ModelFamily

STAGE = "shards"


def shards_variant(family: ModelFamily | None) -> str:
    """What sets a family's shards apart from the plain ones: its answer-tuning tag, or ``""``."""
    if family is None or family.answer_tuning is None:
        return ""
    return family.answer_tuning.tag(family.context_length)


def shards_key(dataset_version: str, tokenizer_version: str, variant: str = "") -> str:
    """The state key of the shards of a dataset version, a tokenizer version and a variant.

    >>> shards_key("ds-1", "tok-1"), shards_key("ds-1", "tok-1", "at-0123")
    ('ds-1/tok-1', 'ds-1/tok-1/at-0123')
    """
    return f"{dataset_version}/{tokenizer_version}" + (f"/{variant}" if variant else "")


def shards_key_for(family: ModelFamily | None, dataset_version: str, tokenizer_version: str) -> str:
    """The key of the shards ``family`` trains on (what the train stage looks up)."""
    return shards_key(dataset_version, tokenizer_version, shards_variant(family))


def _family_or_none(name: str | None) -> ModelFamily | None:
    from docllm.training.exceptions import UnknownFamilyError
    from docllm.training.families import family

    if not name:
        return None
    try:
        return family(name)
    except UnknownFamilyError:
        # Not this stage's to refuse: plain shards, and the train stage names the unknown family.
        return None


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
    answer_tuning: AnswerTuning | None = None,
    block_size: int | None = None,
) -> JobSpec:
    """The job that encodes a dataset version into token shards.

    With ``answer_tuning`` (a family's setting) and the family's ``block_size``, the job mixes
    answer-tuning examples into the train stream and publishes below the setting's tag.

    With ``instance_count > 1`` every host takes its slice of documents (see
    ``docllm.jobs.shards_job``) and writes ``<split>/part-<host>/``; the
    completion handler then calls :func:`docllm.dataset.shards_output.finalize_shards_output`.
    """
    from docllm.dataset.shards_output import shards_prefix
    from docllm.dataset.versions import dataset_prefix
    from docllm.tokenizer.settings import tokenizer_prefix

    if answer_tuning is not None and not block_size:
        raise ValueError("answer_tuning needs the family's block_size")
    variant = answer_tuning.tag(block_size) if answer_tuning is not None and block_size else ""
    output = shards_prefix(artifact_bucket, manifest.version, tokenizer_version, variant)
    hyperparameters = {
        "output_uri": output,
        "dataset_version": manifest.version,
        "tokenizer_version": tokenizer_version,
        "shard_tokens": str(shard_tokens),
    }
    if answer_tuning is not None:
        hyperparameters["answer_tuning"] = answer_tuning.model_dump_json()
        hyperparameters["block_size"] = str(block_size)
    return JobSpec(
        name=job_name,
        image="tokenizer",
        entry_point="docllm.jobs.shards_job",
        hyperparameters=hyperparameters,
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
    fam = _family_or_none(trained.family)
    variant = shards_variant(fam)
    key = shards_key(trained.dataset_version, trained.tokenizer_version, variant)
    context = {
        "dataset_version": trained.dataset_version,
        "tokenizer_version": trained.tokenizer_version,
        "tokenizer_uri": trained.artifacts_uri,
        "family": trained.family or "",
        "train_after": str(trained.train_after).lower(),
        "request_id": trained.request_id or "",
        "shards_key": key,
    }
    existing = p.state.get(SHARDS_PK, key)
    if existing is not None:
        # Nothing changes state here: publishing on every delivery is safe (consumers are idempotent).
        p.bus.publish([to_bus(shards_built(context, shards_uri=existing["shards_uri"], tokens=existing["tokens"]))])
        return {"shards": key, "outcome": "reused"}
    manifest = load_manifest(p.objects, p.settings.artifact_bucket, trained.dataset_version)
    # The plain shards keep their job name; a variant's name differs by its tag.
    inputs = [trained.dataset_version, trained.tokenizer_version, *([variant] if variant else [])]
    name = job_name(STAGE, digest(*inputs), p)
    spec = shards_job_spec(
        manifest=manifest,
        tokenizer_version=trained.tokenizer_version,
        artifact_bucket=p.settings.artifact_bucket,
        job_name=name,
        answer_tuning=fam.answer_tuning if fam is not None else None,
        block_size=fam.context_length if fam is not None else None,
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
    key = ctx.get("shards_key") or shards_key(ctx["dataset_version"], ctx["tokenizer_version"])
    item = {"shards_uri": record.output_uri, "tokens": tokens, **ctx}
    if result.get("answer_tuning"):
        item["answer_tuning"] = result["answer_tuning"]
    return Completion(
        event=shards_built(ctx, shards_uri=record.output_uri, tokens=tokens),
        # Records of jobs launched before the key had variants hold no shards_key: the plain key.
        writes=[Put(SHARDS_PK, key, item)],
    )
