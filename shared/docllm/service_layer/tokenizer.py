"""Tokenizer stage: train (or reuse) the SentencePiece tokenizer of a dataset version.

Which tokenizer a family's run uses (its tokenizer policy, ``docs/training.md``):

* ``own`` (the default): the one trained on the dataset version with the family's settings,
  content-addressed, so an unchanged train split reuses the tokenizer trained before;
* shared (``tokenizer_policy: shared`` + ``tokenizer_from``, and every ``distill`` student, whose
  teacher's it must be): the named family's champion's, without a job; no champion there is a
  "Stage Failed" (nothing to share yet);
* method ``continue`` with a champion: the champion's, as long as it covers the new data (share
  of tokens neither unknown nor byte fallback, :mod:`docllm.tokenizer.coverage`) at least
  ``incremental.min_tokenizer_coverage``; the tokenizer job measures it (SentencePiece is not in
  the Lambda layer) and trains a new one when it falls short. The train stage then sees another
  tokenizer than the champion's and runs a full retrain (``service_layer/train_continue.py``).

Every choice made by policy is recorded (``pk="tokenizer-choices"``, ``sk=family#dataset version``:
:class:`TokenizerChoice`) with its reason, which the continue launcher copies into the job context.
Methods that train no tokenizer (``train.DATASET_METHODS``: lora, bedrock-customization) are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from docllm.bootstrap import Platform
from docllm.events.contracts import DatasetBuilt, StageFailed, TokenizerTrained, parse_detail, to_bus
from docllm.ports.jobs import JobSpec
from docllm.ports.state import Put, Write
from docllm.records import JobRecord, utcnow
from docllm.service_layer.jobs import MODELS_PK, Completion, digest, job_name, launch, read_result
from docllm.service_layer.outbox import commit

if TYPE_CHECKING:
    from docllm.dataset.versions import DatasetManifest
    from docllm.tokenizer.settings import TokenizerSettings
    from docllm.training.families import ModelFamily

STAGE = "tokenizer"
CHOICES_PK = "tokenizer-choices"


class TokenizerChoice(BaseModel):
    """Which tokenizer a family's run on a dataset version uses, when its policy chose (not ``own``)."""

    family: str
    dataset_version: str
    tokenizer_version: str = Field(description="the tokenizer the run uses")
    policy: Literal["shared", "continue"]
    source_family: str = Field(description="the family whose champion's tokenizer was considered")
    source_model: str = Field(description="that champion's model version")
    reused: bool = Field(description="the champion's tokenizer is used (false: a new one was trained)")
    coverage: float | None = Field(default=None, description="continue: the champion tokenizer's coverage")
    min_coverage: float | None = None
    reason: str
    decided_at: str = Field(default_factory=utcnow)


def choice_key(family: str, dataset_version: str) -> str:
    return f"{family}#{dataset_version}"


def find_choice(p: Platform, family: str, dataset_version: str) -> TokenizerChoice | None:
    """The recorded tokenizer choice of a family's run on a dataset version, or None (policy ``own``)."""
    item = p.state.get(CHOICES_PK, choice_key(family, dataset_version))
    return TokenizerChoice.model_validate(item) if item else None


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
    fam: ModelFamily | None = None
    if built.family:
        from docllm.service_layer.train import DATASET_METHODS
        from docllm.training.families import family as family_named

        fam = family_named(built.family)
        if fam.method in DATASET_METHODS:
            # LoRA / Bedrock customization: the base model's tokenizer; the train stage takes this event.
            return {"dataset_version": built.dataset_version, "outcome": "skipped: the family needs no tokenizer"}
    manifest = load_manifest(p.objects, p.settings.artifact_bucket, built.dataset_version)
    settings = TokenizerSettings()
    if fam is not None:
        # A family may ask for its own vocabulary (a tiny CPU model wants a small one).
        settings = TokenizerSettings.model_validate({**settings.model_dump(), **fam.tokenizer})
    version = tokenizer_version(settings, manifest)
    context = {
        "dataset_version": built.dataset_version,
        "tokenizer_version": version,
        "family": built.family or "",
        "train_after": str(built.train_after).lower(),
        "request_id": built.request_id or "",
    }
    # The family's tokenizer policy (module docstring): another family's champion's, or the champion's
    # own while it covers the new data; else the plain path below.
    if fam is not None and fam.tokenizer_family:
        return _share(p, fam, fam.tokenizer_family, context)
    if fam is not None and fam.method == "continue":
        decided = _reuse_if_covered(p, fam, manifest, settings, context)
        if decided is not None:
            return decided
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


def _share(p: Platform, fam: ModelFamily, source: str, context: dict[str, str]) -> dict[str, Any]:
    """Use ``source``'s champion's tokenizer (no job): announce it, and record the choice with it."""
    from docllm.tokenizer.artifacts import find_tokenizer

    champion = p.registry.aliases(source).get("champion")
    model = p.state.get(MODELS_PK, champion) if champion else None
    summary = find_tokenizer(p.state, str(model.get("tokenizer_version"))) if model else None
    if champion is None or summary is None:
        why = "has no champion yet" if champion is None else f"champion {champion} has no recorded tokenizer"
        reason = f"family {fam.name} uses family {source}'s tokenizer, and {source} {why}"
        subject = f"{fam.name}/{context['dataset_version']}"
        commit(
            p, [], [StageFailed(stage=STAGE, subject=subject, reason=reason, request_id=context["request_id"] or None)]
        )
        return {"outcome": "failed", "reason": reason}
    choice = TokenizerChoice(
        family=fam.name,
        dataset_version=context["dataset_version"],
        tokenizer_version=summary.version,
        policy="shared",
        source_family=source,
        source_model=champion,
        reused=True,
        reason=f"shares family {source}'s tokenizer {summary.version} (champion {champion})",
    )
    event = tokenizer_trained(
        {**context, "tokenizer_version": summary.version},
        artifacts_uri=summary.artifacts_uri,
        vocab_size=summary.vocab_size,
        reused=True,
    )
    commit(p, [Put(CHOICES_PK, choice_key(fam.name, choice.dataset_version), choice.model_dump(mode="json"))], [event])
    return {"tokenizer_version": summary.version, "outcome": "shared", "source": source, "champion": champion}


def _reuse_if_covered(
    p: Platform, fam: ModelFamily, manifest: DatasetManifest, settings: TokenizerSettings, context: dict[str, str]
) -> dict[str, Any] | None:
    """A continue family with a champion: measure its tokenizer on the new data in a job (reuse or
    retrain). None where the plain path applies: no champion, or its tokenizer is this data's anyway."""
    from docllm.tokenizer.artifacts import find_tokenizer
    from docllm.tokenizer.coverage import REUSE_IF_COVERED

    champion = p.registry.aliases(fam.name).get("champion")
    model = p.state.get(MODELS_PK, champion) if champion else None
    if champion is None or model is None:
        return None
    candidate = find_tokenizer(p.state, str(model.get("tokenizer_version")))
    if candidate is None or candidate.version == context["tokenizer_version"]:
        return None
    earlier = find_choice(p, fam.name, context["dataset_version"])
    if earlier is not None and earlier.source_model == champion:
        # Decided before (a redelivery, or the same dataset built again): announce the same outcome.
        from docllm.tokenizer.artifacts import find_tokenizer as find

        chosen = find(p.state, earlier.tokenizer_version)
        if chosen is not None:
            ctx = {**context, "tokenizer_version": chosen.version}
            p.bus.publish(
                [
                    to_bus(
                        tokenizer_trained(
                            ctx, artifacts_uri=chosen.artifacts_uri, vocab_size=chosen.vocab_size, reused=True
                        )
                    )
                ]
            )
            return {"tokenizer_version": chosen.version, "outcome": "decided before", "reused": earlier.reused}
    threshold = fam.incremental.min_tokenizer_coverage
    name = job_name(f"{STAGE}-cov", digest(context["tokenizer_version"], candidate.version), p)
    spec = tokenizer_job_spec(
        manifest=manifest, settings=settings, artifact_bucket=p.settings.artifact_bucket, job_name=name
    )
    spec = spec.model_copy(
        update={
            "hyperparameters": {
                **spec.hyperparameters,
                "mode": REUSE_IF_COVERED,
                "reuse_version": candidate.version,
                "min_coverage": str(threshold),
            },
            "channels": {**spec.channels, "reuse": candidate.artifacts_uri},
        }
    )
    job_context = {
        **context,
        "mode": REUSE_IF_COVERED,
        "reuse_version": candidate.version,
        "reuse_uri": candidate.artifacts_uri,
        "reuse_vocab_size": str(candidate.vocab_size),
        "champion": champion,
        "min_coverage": str(threshold),
    }
    outcome = launch(p, spec, STAGE, job_context)
    return {
        "tokenizer_version": context["tokenizer_version"],
        "job": name,
        "outcome": outcome,
        "mode": REUSE_IF_COVERED,
    }


def complete_job(p: Platform, record: JobRecord) -> Completion:
    """The tokenizer job finished: remember the tokenizer (later builds reuse it) and announce it; in
    reuse-if-covered mode, announce the champion's tokenizer or the new one, and record why."""
    from docllm.tokenizer.artifacts import TOKENIZERS_PK, TokenizerResult, summarize_tokenizer
    from docllm.tokenizer.coverage import REUSE_IF_COVERED, CoverageDecision

    ctx = record.context
    if ctx.get("mode") != REUSE_IF_COVERED:
        result = TokenizerResult.model_validate(read_result(p, record.output_uri))
        summary = summarize_tokenizer(result, record.output_uri)
        return Completion(
            event=tokenizer_trained(ctx, artifacts_uri=record.output_uri, vocab_size=result.vocab_size),
            writes=[Put(TOKENIZERS_PK, summary.version, summary.model_dump(mode="json"))],
        )
    decision = CoverageDecision.model_validate(read_result(p, record.output_uri))
    choice = TokenizerChoice(
        family=ctx["family"],
        dataset_version=ctx["dataset_version"],
        tokenizer_version=ctx["reuse_version"] if decision.reused else ctx["tokenizer_version"],
        policy="continue",
        source_family=ctx["family"],
        source_model=ctx["champion"],
        reused=decision.reused,
        coverage=decision.coverage.coverage,
        min_coverage=decision.min_coverage,
        reason=decision.reason,
    )
    writes: list[Write] = [
        Put(CHOICES_PK, choice_key(choice.family, choice.dataset_version), choice.model_dump(mode="json"))
    ]
    if decision.reused:
        event = tokenizer_trained(
            {**ctx, "tokenizer_version": ctx["reuse_version"]},
            artifacts_uri=ctx["reuse_uri"],
            vocab_size=int(ctx["reuse_vocab_size"]),
            reused=True,
        )
        return Completion(event=event, writes=writes)
    if decision.trained is None:
        from docllm.exceptions import PermanentError

        raise PermanentError(f"{record.output_uri}result.json: the tokenizer was not kept and none was trained")
    summary = summarize_tokenizer(decision.trained, record.output_uri)
    writes.append(Put(TOKENIZERS_PK, summary.version, summary.model_dump(mode="json")))
    event = tokenizer_trained(ctx, artifacts_uri=record.output_uri, vocab_size=decision.trained.vocab_size)
    return Completion(event=event, writes=writes)
