"""Job bookkeeping shared by the stages that launch jobs, and the completion stage.

A stage records a :class:`JobRecord` before submitting, so the "Training Job
State Change" event (SageMaker's, or the local runner's identical one) can be
routed back to the stage that asked, with the inputs it asked with. Each job
stage owns its completion: ``service_layer/<stage>.py`` defines
``complete_job(p, record) -> Completion`` (the state it records and the event
that moves the chain on), and this module commits both with the record's end
state through the outbox, in one transaction.

Lost responses are reconciled by name: job names are deterministic per input,
and a record is kept when a submit fails, so a redelivery that finds the record
asks the runner whether the job exists and adopts it, or submits again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from docllm.bootstrap import Platform
from docllm.events.aws import TrainingJobStateChangeEvent
from docllm.events.contracts import EventDetail, StageFailed
from docllm.exceptions import ConflictError, NotFoundError, PermanentError
from docllm.ports.jobs import JobSpec
from docllm.ports.objects import split_uri
from docllm.ports.state import Put, Write
from docllm.records import JOBS_PK, JobRecord, utcnow
from docllm.retries import retry_transient
from docllm.service_layer.outbox import commit

SHARDS_PK = "shards"
MODELS_PK = "models"
#: Stage names of records written before a stage was renamed.
_FORMER_STAGE_NAMES = {"tokenize": "shards"}
_ENDED = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class Completion:
    """What a job stage records when its job completed, and the event that announces it."""

    event: EventDetail
    writes: list[Write] = field(default_factory=list)


def digest(*parts: str) -> str:
    """16 hex digits naming a combination of inputs (job names must stay under 63 characters)."""
    return hashlib.sha256("/".join(parts).encode("utf-8")).hexdigest()[:16]


def job_name(prefix: str, version: str, p: Platform) -> str:
    """``docllm-<deployment stage>-<job prefix>-<version>-<attempt>``: deterministic per input, so a
    redelivered request cannot start a second job, and per deployment stage, so dev and prod in one
    account never share a job name (IAM scopes ``CreateTrainingJob`` to the stage's prefix).
    A new attempt number only after earlier attempts ended without success."""
    attempt = 1
    while True:
        name = f"docllm-{p.settings.stage}-{prefix}-{version[:16]}-{attempt}"
        item = p.state.get(JOBS_PK, name)
        if item is None or item.get("status") not in ("Failed", "Stopped"):
            return name
        attempt += 1


def launch(p: Platform, spec: JobSpec, stage: str, context: dict[str, str]) -> str:
    """Record, then submit. A record found means an earlier delivery got this far: if its job
    exists (the submit succeeded, perhaps with its response lost) it is adopted, else submitted."""
    # Jobs publish under the prefix their hyperparameters name (spec.output_uri is SageMaker's own).
    output = spec.hyperparameters.get("output_uri", spec.output_uri)
    record = JobRecord(name=spec.name, stage=stage, status="InProgress", output_uri=output, context=context)
    if _run_cancelled(p, record):
        # Its pipeline run was cancelled while the previous stage worked: the chain stops here.
        record.status, record.failure_reason = "Stopped", f"pipeline run {context.get('request_id')} was cancelled"
        with contextlib.suppress(ConflictError):
            p.state.put(JOBS_PK, spec.name, record.model_dump(mode="json"), if_absent=True)
        return "run cancelled"
    try:
        p.state.put(JOBS_PK, spec.name, record.model_dump(mode="json"), if_absent=True)
    except ConflictError:
        existing = JobRecord.model_validate(p.state.get(JOBS_PK, spec.name) or record.model_dump())
        if existing.status != "InProgress" or _job_exists(p, spec.name):
            return "already-launched"
    try:
        p.jobs.submit(spec)
    except ConflictError:
        if not _job_exists(p, spec.name):
            raise
        return "already-launched"  # the earlier submit went through; its response was lost
    except PermanentError as e:
        # Retrying cannot help (a refused spec): the request fails now, and says why.
        _fail(p, record, f"the job could not be started: {e}")
        e.announced = True  # type: ignore[attr-defined]  # lambda_support must not announce it again
        raise
    if _run_cancelled(p, record):
        # Cancelled between the check above and the submit: the cancel found the record but no job to
        # stop. Stopped now, it ends as the run's other jobs do (recorded Stopped by handle_job_state).
        with contextlib.suppress(NotFoundError):
            p.jobs.stop(spec.name)
        return "run cancelled"
    p.metrics.put("JobsLaunched", 1, dimensions={"stage": stage})
    return "launched"


def _job_exists(p: Platform, name: str) -> bool:
    try:
        p.jobs.describe(name)
    except NotFoundError:
        return False
    return True


def champion_model(p: Platform, family: str) -> tuple[str | None, dict[str, Any] | None]:
    """The family's champion version and its model record; ``(None, None)`` while it has none (a family
    the registry has never seen has no champion either). Methods that start from another model (a
    LoRA base, a distillation teacher) read it here."""
    try:
        champion = p.registry.aliases(family).get("champion")
    except NotFoundError:
        return None, None
    if not champion:
        return None, None
    return str(champion), p.state.get(MODELS_PK, champion)


def read_result(p: Platform, output_uri: str) -> dict[str, Any]:
    bucket, prefix = split_uri(output_uri if output_uri.endswith("/") else output_uri + "/")
    return dict(json.loads(retry_transient(lambda: p.objects.get(bucket, prefix + "result.json"))))


def stage_of(record: JobRecord) -> str:
    return _FORMER_STAGE_NAMES.get(record.stage, record.stage)


def handle_job_state(p: Platform, raw: dict[str, Any]) -> dict[str, str]:
    event = TrainingJobStateChangeEvent.model_validate(raw)
    d = event.detail
    item = p.state.get(JOBS_PK, d.TrainingJobName)
    if item is None:
        return {"job": d.TrainingJobName, "outcome": "not ours"}
    record = JobRecord.model_validate(item)
    if record.status in _ENDED:
        return {"job": record.name, "outcome": "already handled"}
    if d.TrainingJobStatus in _ENDED and _run_cancelled(p, record):
        # The pipeline run was cancelled or superseded: whatever the job made (a stopped training job may
        # still exit cleanly and report Completed) is not completed, so no model of the run is registered.
        # The run record already says why; nothing is published.
        record.status, record.updated_at = "Stopped", utcnow()
        record.failure_reason = f"pipeline run {record.context.get('request_id')} was cancelled"
        commit(p, [Put(JOBS_PK, record.name, record.model_dump(mode="json"))], [])
        return {"job": record.name, "outcome": "run cancelled: recorded Stopped"}
    if d.TrainingJobStatus == "Completed":
        stage = importlib.import_module(f"docllm.service_layer.{stage_of(record)}")
        try:
            done: Completion = stage.complete_job(p, record)
        except NotFoundError as e:
            return _fail(p, record, f"the job completed but its result is missing: {e}")
        except (PermanentError, ValidationError) as e:
            # A result that can never be read (malformed, another contract): the stage fails, and says so.
            return _fail(p, record, f"the job completed but its result is unusable: {type(e).__name__}: {e}"[:2000])
        record.status, record.updated_at = "Completed", utcnow()
        commit(p, [Put(JOBS_PK, record.name, record.model_dump(mode="json")), *done.writes], [done.event])
        return {"job": record.name, "outcome": "completed", "next": done.event.DETAIL_TYPE}
    if d.TrainingJobStatus in ("Failed", "Stopped"):
        return _fail(p, record, d.FailureReason or f"the job ended {d.TrainingJobStatus}")
    return {"job": record.name, "outcome": "ignored"}


def _fail(p: Platform, record: JobRecord, reason: str) -> dict[str, str]:
    record.status, record.failure_reason, record.updated_at = "Failed", reason, utcnow()
    failed = StageFailed(
        stage=stage_of(record), subject=record.name, reason=reason, request_id=record.context.get("request_id") or None
    )
    commit(p, [Put(JOBS_PK, record.name, record.model_dump(mode="json"))], [failed])
    p.metrics.put("JobsFailed", 1, dimensions={"stage": stage_of(record)})
    return {"job": record.name, "outcome": "failed", "reason": reason}


def _run_cancelled(p: Platform, record: JobRecord) -> bool:
    """Whether the job belongs to a pipeline run that was cancelled or superseded."""
    from docllm.service_layer.pipelines import run_cancelled

    return run_cancelled(p, record.context.get("request_id"))
