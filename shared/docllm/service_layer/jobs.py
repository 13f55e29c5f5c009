"""Job bookkeeping shared by the stages that launch jobs, and the completion stage.

A stage records a :class:`JobRecord` before submitting, so the "Training Job
State Change" event (SageMaker's, or the local runner's identical one) can be
routed back to the stage that asked, with the inputs it asked with.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from docllm.bootstrap import Platform
from docllm.events.aws import TrainingJobStateChangeEvent
from docllm.events.contracts import (
    DatasetTokenized,
    EventDetail,
    ModelTrained,
    StageFailed,
    TokenizerTrained,
    to_bus,
)
from docllm.exceptions import ConflictError, NotFoundError
from docllm.ports.jobs import JobSpec
from docllm.ports.objects import split_uri
from docllm.records import JOBS_PK, JobRecord, utcnow

SHARDS_PK = "shards"
MODELS_PK = "models"


def digest(*parts: str) -> str:
    """16 hex digits naming a combination of inputs (job names must stay under 63 characters)."""
    return hashlib.sha256("/".join(parts).encode("utf-8")).hexdigest()[:16]


def job_name(prefix: str, version: str, p: Platform) -> str:
    """Deterministic per input, so a redelivered request cannot start a second job; a new
    attempt number only after earlier attempts ended without success."""
    attempt = 1
    while True:
        name = f"docllm-{prefix}-{version[:16]}-{attempt}"
        item = p.state.get(JOBS_PK, name)
        if item is None or item.get("status") in ("InProgress", "Completed"):
            return name
        attempt += 1


def launch(p: Platform, spec: JobSpec, stage: str, context: dict[str, str]) -> str:
    """Record, then submit; an existing record for the name means it was already launched."""
    # Jobs publish under the prefix their hyperparameters name (spec.output_uri is SageMaker's own).
    output = spec.hyperparameters.get("output_uri", spec.output_uri)
    record = JobRecord(name=spec.name, stage=stage, output_uri=output, context=context)
    try:
        p.state.put(JOBS_PK, spec.name, record.model_dump(mode="json"), if_absent=True)
    except ConflictError:
        return "already-launched"
    try:
        p.jobs.submit(spec)
    except Exception:
        p.state.delete(JOBS_PK, spec.name)  # let the redelivery try again from a clean slate
        raise
    p.metrics.put("JobsLaunched", 1, dimensions={"stage": stage})
    return "launched"


def read_result(p: Platform, output_uri: str) -> dict[str, Any]:
    bucket, prefix = split_uri(output_uri if output_uri.endswith("/") else output_uri + "/")
    return dict(json.loads(p.objects.get(bucket, prefix + "result.json")))


def handle_job_state(p: Platform, raw: dict[str, Any]) -> dict[str, str]:
    event = TrainingJobStateChangeEvent.model_validate(raw)
    d = event.detail
    item = p.state.get(JOBS_PK, d.TrainingJobName)
    if item is None:
        return {"job": d.TrainingJobName, "outcome": "not ours"}
    record = JobRecord.model_validate(item)
    if record.status in ("Completed", "Failed", "Stopped"):
        return {"job": record.name, "outcome": "already handled"}
    if d.TrainingJobStatus == "Completed":
        try:
            if record.stage == "tokenize":
                from docllm.dataset.tokens import finalize_tokenize_output

                # A multi-host tokenize job has one part result per host; none of them can
                # know when the others finished, so the merge happens here.
                parts = int(record.context.get("instance_count", "1"))
                finalize_tokenize_output(p.objects, record.output_uri, expected_parts=parts)
            result = read_result(p, record.output_uri)
        except NotFoundError as e:
            return _fail(p, record, f"the job completed but its result is missing: {e}")
        next_event = _completed(p, record, result)
        record.status = "Completed"
        record.updated_at = utcnow()
        p.state.put(JOBS_PK, record.name, record.model_dump(mode="json"))
        p.bus.publish([to_bus(next_event)])
        return {"job": record.name, "outcome": "completed", "next": next_event.DETAIL_TYPE}
    if d.TrainingJobStatus in ("Failed", "Stopped"):
        return _fail(p, record, d.FailureReason or f"the job ended {d.TrainingJobStatus}")
    return {"job": record.name, "outcome": "ignored"}


def _fail(p: Platform, record: JobRecord, reason: str) -> dict[str, str]:
    record.status, record.failure_reason, record.updated_at = "Failed", reason, utcnow()
    p.state.put(JOBS_PK, record.name, record.model_dump(mode="json"))
    p.bus.publish([to_bus(StageFailed(stage=record.stage, subject=record.name, reason=reason))])
    p.metrics.put("JobsFailed", 1, dimensions={"stage": record.stage})
    return {"job": record.name, "outcome": "failed", "reason": reason}


def _completed(p: Platform, record: JobRecord, result: dict[str, Any]) -> EventDetail:
    ctx = record.context
    family = ctx.get("family") or None
    train_after = ctx.get("train_after") == "true"
    request_id = ctx.get("request_id") or None
    if record.stage == "tokenizer":
        from docllm.tokenizer.artifacts import TokenizerResult, record_tokenizer

        version = ctx["tokenizer_version"]
        record_tokenizer(p.state, TokenizerResult.model_validate(result), record.output_uri)
        return TokenizerTrained(
            tokenizer_version=version,
            dataset_version=ctx["dataset_version"],
            artifacts_uri=record.output_uri,
            vocab_size=int(result["vocab_size"]),
            family=family,
            train_after=train_after,
            request_id=request_id,
        )
    if record.stage == "tokenize":
        tokens = {str(k): int(v) for k, v in (result.get("tokens") or {}).items()}
        key = f"{ctx['dataset_version']}/{ctx['tokenizer_version']}"
        p.state.put(SHARDS_PK, key, {"shards_uri": record.output_uri, "tokens": tokens, **ctx})
        return DatasetTokenized(
            dataset_version=ctx["dataset_version"],
            tokenizer_version=ctx["tokenizer_version"],
            shards_uri=record.output_uri,
            tokens=tokens,
            family=family,
            train_after=train_after,
            request_id=request_id,
        )
    if record.stage == "train":
        from docllm.training.result import TrainingJobResult

        trained = TrainingJobResult.model_validate(result)
        version = trained.model_version
        metrics = {
            k: float(v)
            for k, v in trained.model_dump(
                include={
                    "final_train_loss",
                    "final_val_loss",
                    "best_val_loss",
                    "unigram_val_loss",
                    "tokens_seen",
                    "steps",
                    "elapsed_s",
                    "tokens_per_s",
                    "n_params",
                }
            ).items()
            if v is not None
        }
        export_uri = record.output_uri.rstrip("/") + "/" + trained.export_path.strip("/") + "/"
        p.state.put(
            MODELS_PK,
            version,
            {"version": version, "job": record.name, "export_uri": export_uri, "metrics": metrics, **ctx},
        )
        return ModelTrained(
            model_version=version,
            family=ctx["family"],
            job_name=record.name,
            dataset_version=ctx["dataset_version"],
            tokenizer_version=ctx["tokenizer_version"],
            export_uri=export_uri,
            checkpoint_uri=ctx.get("checkpoint_uri"),
            metrics=metrics,
        )
    raise NotFoundError(f"no completion rule for stage {record.stage!r}")
