"""Pipelines stage: keep each model family current (docs/pipelines.md).

Inputs, one queue, one function (``PipelinesFunction``, reserved concurrency 1, so each family's
record is read and written by one invocation at a time):

"Document Processed" / "Document Removed"
    For every family that retrains on change and whose data filter matches the document, the change
    (added, changed or removed; a re-upload of the same bytes is none) joins the family's stale
    reasons, committed with "Family Marked Stale". Idempotent per (document, revision).
"Pipelines Tick" (EventBridge Scheduler, every 5 minutes; ``docllm up`` runs the same schedule)
    Each stale family whose debounce or schedule allows it starts a run (``docllm.pipelines.decide``).
"Pipeline Run Requested" (``docllm pipeline run``)
    Starts a run now, bypassing the debounce; a run in progress is superseded (its jobs stopped).
"Pipeline Cancel Requested" (``docllm pipeline cancel``)
    The run in progress is cancelled: its jobs stopped, its state marked; the job-events and gate
    stages then complete nothing of it (``run_cancelled``), so no model of it is registered.
The run's chain ("Dataset Built" … "Model Deployed", "Stage Failed")
    moves the run's stage, and ends it (``docllm.pipelines.runs.step``).

A start is one outbox commit: the run record (the stale changes moved into it, the family's
configuration digest and the families document's version), "Pipeline Run Started" and "Training
Requested" with ``request_id = run_id``, from which the existing chain builds the dataset, the
tokenizer, the shards, trains, evaluates, gates and deploys.

No Powertools idempotency on this handler: the scheduler's tick carries no id that changes between
firings, and every input is idempotent in the domain instead (a document revision seen, a run id
that exists, a run already ended).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from docllm.bootstrap import Platform
from docllm.events.contracts import (
    DocumentProcessed,
    DocumentRemoved,
    EventDetail,
    FamilyMarkedStale,
    PipelineCancelRequested,
    PipelineRunEnded,
    PipelineRunRequested,
    PipelineRunStarted,
    TrainingRequested,
    parse_detail,
)
from docllm.events.envelope import BusEvent
from docllm.exceptions import ConflictError, NotFoundError
from docllm.pipelines import (
    CANCELLED,
    PIPELINES_PK,
    RUNS_PK,
    FamilyPipeline,
    PipelineRun,
    StaleChange,
    Staleness,
    TrackedDocument,
    decide,
    deploys_to,
    docs_pk,
    step,
)
from docllm.pipelines.records import parse_time
from docllm.ports.state import Put, Write
from docllm.records import JOBS_PK, JobRecord
from docllm.service_layer.outbox import commit

if TYPE_CHECKING:
    from docllm.training.families import ModelFamily

STAGE = "pipelines"
#: detail-type of the scheduler's tick (the schedule's Input; not a bus event, so no contract).
TICK = "Pipelines Tick"
#: Events of a run's chain the stage follows (by request_id).
CHAIN_EVENTS = frozenset(
    {
        "Dataset Built",
        "Tokenizer Trained",
        "Shards Built",
        "Model Trained",
        "Evaluation Completed",
        "Model Approved",
        "Model Rejected",
        "Model Deployed",
        "Stage Failed",
    }
)

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds")


def handle_pipelines_event(p: Platform, raw: dict[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """One input of the stage; ``now`` is injectable so that tests can move time."""
    at = now or _now()
    detail_type = raw.get("detail-type")
    if detail_type == TICK:
        return tick(p, now=at)
    event = BusEvent.model_validate(raw)
    if detail_type == DocumentProcessed.DETAIL_TYPE:
        return on_document_processed(p, parse_detail(event, DocumentProcessed), now=at)
    if detail_type == DocumentRemoved.DETAIL_TYPE:
        return on_document_removed(p, parse_detail(event, DocumentRemoved), now=at)
    if detail_type == PipelineRunRequested.DETAIL_TYPE:
        return request_run(p, parse_detail(event, PipelineRunRequested), now=at)
    if detail_type == PipelineCancelRequested.DETAIL_TYPE:
        return cancel_run(p, parse_detail(event, PipelineCancelRequested), now=at)
    if detail_type in CHAIN_EVENTS:
        return follow_run(p, str(detail_type), event.detail, now=at)
    return {"outcome": "ignored", "detail_type": detail_type}


# -- records --------------------------------------------------------------------------------------


def _families() -> dict[str, ModelFamily]:
    from docllm.training.families import load_families

    return load_families()


def load_pipeline(p: Platform, family: str, *, now: datetime | None = None) -> FamilyPipeline:
    """The family's record, or a fresh one (its schedule counts from ``now``)."""
    item = p.state.get(PIPELINES_PK, family)
    if item is not None:
        return FamilyPipeline.model_validate(item)
    return FamilyPipeline(family=family, created_at=_iso(now or _now()))


def load_run(p: Platform, run_id: str) -> PipelineRun | None:
    item = p.state.get(RUNS_PK, run_id)
    return PipelineRun.model_validate(item) if item is not None else None


def run_cancelled(p: Platform, request_id: str | None) -> bool:
    """Whether ``request_id`` names a pipeline run that was cancelled or superseded: the guards of the
    job-events and gate stages complete nothing of such a run."""
    if not request_id:
        return False
    item = p.state.get(RUNS_PK, request_id)
    return item is not None and item.get("state") in CANCELLED


def _put_pipeline(pipeline: FamilyPipeline) -> Put:
    return Put(PIPELINES_PK, pipeline.family, pipeline.model_dump(mode="json"))


def _put_run(run: PipelineRun, *, new: bool = False) -> Put:
    return Put(RUNS_PK, run.run_id, run.model_dump(mode="json"), if_absent=new)


# -- staleness ------------------------------------------------------------------------------------


def on_document_processed(p: Platform, ev: DocumentProcessed, *, now: datetime) -> dict[str, Any]:
    if ev.duplicate_of:
        # Its content is another document's, which the families already train on.
        return {"doc_key": ev.doc_key, "outcome": "duplicate: no change"}
    marked = {}
    for fam in _families().values():
        if fam.retrain.on_change and fam.data_filter.matches(ev.doc_key, ev.service, ev.language):
            marked[fam.name] = _mark(
                p, fam.name, ev.doc_key, sha256=ev.sha256, tokens=ev.token_estimate, revision=ev.revision or "", now=now
            )
    return {"doc_key": ev.doc_key, "families": marked}


def on_document_removed(p: Platform, ev: DocumentRemoved, *, now: datetime) -> dict[str, Any]:
    # "Document Removed" names no service: a family knows the documents its filter matched.
    marked = {}
    for fam in _families().values():
        if fam.retrain.on_change and p.state.get(docs_pk(fam.name), ev.doc_key) is not None:
            marked[fam.name] = _mark(
                p, fam.name, ev.doc_key, sha256=None, tokens=0, revision=ev.revision or "", now=now, removed=True
            )
    return {"doc_key": ev.doc_key, "families": marked}


def _mark(
    p: Platform,
    family: str,
    doc_key: str,
    *,
    sha256: str | None,
    tokens: int,
    revision: str,
    now: datetime,
    removed: bool = False,
) -> str:
    item = p.state.get(docs_pk(family), doc_key)
    tracked = TrackedDocument.model_validate(item) if item is not None else None
    # Revisions sort by time: an older or equal one is a redelivery (or overtaken by a newer change).
    if tracked is not None and revision and tracked.revision and revision <= tracked.revision:
        return "already seen"
    known = tracked is not None and not tracked.removed
    if removed:
        if not known:
            return "not the family's"
        assert tracked is not None
        change, tokens = "removed", tracked.tokens
        new = tracked.model_copy(update={"revision": revision, "removed": True})
    else:
        new = TrackedDocument(doc_key=doc_key, sha256=sha256, tokens=tokens, revision=revision)
        if known and tracked is not None and tracked.sha256 == sha256:
            # The same bytes again (a new object version of an unchanged page): no change to train on.
            commit(p, [Put(docs_pk(family), doc_key, new.model_dump(mode="json"))], [])
            return "same content"
        change = "changed" if known else "added"
    pipeline = load_pipeline(p, family, now=now)
    pipeline.staleness.add(
        doc_key, StaleChange(change=change, sha256=sha256, tokens=tokens, at=_iso(now), revision=revision)
    )
    commit(
        p,
        [Put(docs_pk(family), doc_key, new.model_dump(mode="json")), _put_pipeline(pipeline)],
        [
            FamilyMarkedStale(
                family=family,
                doc_key=doc_key,
                change=change,
                documents=pipeline.staleness.count,
                tokens=pipeline.staleness.tokens,
                revision=revision,
            )
        ],
    )
    return change


# -- starting runs --------------------------------------------------------------------------------


def tick(p: Platform, *, now: datetime) -> dict[str, Any]:
    """Start every family whose debounce or schedule allows it; say why the others wait."""
    started, waiting = {}, {}
    for fam in _families().values():
        if p.state.get(PIPELINES_PK, fam.name) is None:
            continue  # never marked stale: nothing to train on
        pipeline = load_pipeline(p, fam.name, now=now)
        decision = _decision(fam, pipeline, now)
        if not decision.start:
            waiting[fam.name] = decision.reason
            continue
        assert decision.trigger is not None
        run = _start(p, fam, pipeline, trigger=decision.trigger, reason=decision.reason, now=now)
        started[fam.name] = run.run_id
    return {"outcome": "ticked", "started": started, "waiting": waiting}


def _decision(fam: ModelFamily, pipeline: FamilyPipeline, now: datetime) -> Any:
    last = parse_time(pipeline.last_run_started_at) if pipeline.last_run_started_at else None
    return decide(
        fam.retrain,
        pipeline.staleness,
        now=now,
        anchor=last or parse_time(pipeline.created_at),
        running=pipeline.current_run is not None,
        last_run_started_at=last,
    )


def _start(
    p: Platform,
    fam: ModelFamily,
    pipeline: FamilyPipeline,
    *,
    trigger: str,
    reason: str,
    now: datetime,
    run_id: str | None = None,
    supersedes: str | None = None,
    writes: list[Write] | None = None,
    events: list[EventDetail] | None = None,
) -> PipelineRun:
    from docllm.training.families import config_version

    run = PipelineRun(
        run_id=run_id or uuid.uuid4().hex,
        family=fam.name,
        method=fam.method,
        trigger=trigger,
        reason=reason,
        staleness=pipeline.staleness,
        config_sha256=fam.config_sha256,
        config_version=config_version(),
        started_at=_iso(now),
        supersedes=supersedes,
    )
    pipeline.staleness = Staleness()
    pipeline.current_run = run.run_id
    pipeline.last_run_started_at = run.started_at
    commit(
        p,
        [_put_run(run, new=True), _put_pipeline(pipeline), *(writes or [])],
        [
            *(events or []),
            PipelineRunStarted(
                family=fam.name,
                run_id=run.run_id,
                trigger=run.trigger,
                reason=reason,
                documents=run.staleness.count,
                tokens=run.staleness.tokens,
                config_sha256=run.config_sha256,
                config_version=run.config_version,
                supersedes=supersedes,
                request_id=run.run_id,
            ),
            # The existing chain: dataset → tokenizer → shards → train → evaluate → gate → deploy.
            TrainingRequested(family=fam.name, request_id=run.run_id),
        ],
    )
    return run


def request_run(p: Platform, req: PipelineRunRequested, *, now: datetime) -> dict[str, Any]:
    """A manual run: now, whatever the debounce; a run in progress is superseded first."""
    from docllm.training.families import family as family_named

    started = load_run(p, req.request_id)
    if started is not None:
        # A redelivery: the first delivery committed; the stops that followed its commit may not have run.
        earlier = load_run(p, started.supersedes) if started.supersedes else None
        if earlier is not None and earlier.state in CANCELLED:
            _stop_jobs(p, earlier)
        return {"family": req.family, "run": req.request_id, "outcome": "already started"}
    fam = family_named(req.family)  # UnknownFamilyError: permanent, the request fails at once
    pipeline = load_pipeline(p, fam.name, now=now)
    writes: list[Write] = []
    events: list[EventDetail] = []
    superseded, old = None, None
    if pipeline.current_run is not None:
        old = load_run(p, pipeline.current_run)
        if old is not None and not old.ended:
            _end(p, old, "superseded", f"superseded by run {req.request_id}", now=now)
            old.superseded_by = req.request_id
            # The new run trains on the newest data, which holds the old run's changes too.
            for key, change in old.staleness.documents.items():
                if key not in pipeline.staleness.documents:
                    pipeline.staleness.add(key, change)
            pipeline.last_run = old.summary()
            writes.append(_put_run(old))
            events.append(_ended_event(old))
            superseded = old.run_id
    who = f" by {req.requested_by}" if req.requested_by else ""
    reason = f"requested{who}; {pipeline.staleness.reasons()}"
    try:
        run = _start(
            p,
            fam,
            pipeline,
            trigger="manual",
            reason=reason,
            now=now,
            run_id=req.request_id,
            supersedes=superseded,
            writes=writes,
            events=events,
        )
    except ConflictError:
        return {"family": fam.name, "run": req.request_id, "outcome": "already started"}
    if old is not None and superseded is not None:
        _stop_jobs(p, old)  # after the commit: see _end
    return {"family": fam.name, "run": run.run_id, "outcome": "started", "superseded": superseded}


# -- cancelling -----------------------------------------------------------------------------------


def jobs_of(p: Platform, run_id: str, *, in_progress: bool = False) -> list[JobRecord]:
    """The jobs launched for a run (their context carries its request_id), oldest first."""
    found = []
    for _, item in p.state.query(JOBS_PK):
        if (item.get("context") or {}).get("request_id") != run_id:
            continue
        record = JobRecord.model_validate(item)
        if not in_progress or record.status == "InProgress":
            found.append(record)
    return sorted(found, key=lambda r: r.created_at)


def _end(p: Platform, run: PipelineRun, state: str, reason: str, *, now: datetime) -> None:
    """End ``run`` in memory; a cancellation lists the jobs it stops (its jobs in progress).

    The caller commits the ended run first and calls :func:`_stop_jobs` after: a stopped job's end then
    always finds its run cancelled (the job-events stage records it Stopped, publishes nothing), never
    running (which would record it Failed and publish "Stage Failed"). A stop that fails after the
    commit fails the message; its redelivery finds the run ended and stops what is still running."""
    if state in CANCELLED:
        for job in jobs_of(p, run.run_id, in_progress=True):
            if job.name not in run.stopped_jobs:
                run.stopped_jobs.append(job.name)
    run.state = state  # type: ignore[assignment]  # one of RunState
    run.ended_at = _iso(now)
    run.ended_reason = reason


def _stop_jobs(p: Platform, run: PipelineRun) -> None:
    """Stop every job of a cancelled or superseded run still in progress (idempotent: stopping a job
    that has ended is a no-op)."""
    for job in jobs_of(p, run.run_id, in_progress=True):
        # Recorded but not (yet) submitted: NotFoundError; jobs.launch stops it once it is submitted.
        with contextlib.suppress(NotFoundError):
            if job.stage == "customize":
                # A Bedrock customization job: SageMaker's StopTrainingJob would not reach it.
                from docllm.service_layer.customize import stop as stop_customization

                stop_customization(p, job)
            else:
                p.jobs.stop(job.name)


def _ended_event(run: PipelineRun) -> PipelineRunEnded:
    return PipelineRunEnded(
        family=run.family,
        run_id=run.run_id,
        state=run.state,
        reason=run.ended_reason or "",
        model_version=run.model_version,
        stopped_jobs=run.stopped_jobs,
        request_id=run.run_id,
    )


def cancel_run(p: Platform, req: PipelineCancelRequested, *, now: datetime) -> dict[str, Any]:
    """Cancel the family's run in progress (only ``req.run_id`` when named)."""
    pipeline = load_pipeline(p, req.family, now=now)
    run_id = pipeline.current_run
    if run_id is None or (req.run_id and req.run_id != run_id):
        named = load_run(p, req.run_id) if req.run_id else None
        if named is not None and named.state in CANCELLED:
            _stop_jobs(p, named)  # a redelivery: the stops after the first delivery's commit may not have run
        return {"family": req.family, "outcome": "no run in progress", "run": req.run_id}
    run = load_run(p, run_id)
    if run is None or run.ended:
        return {"family": req.family, "outcome": "already ended", "run": run_id}
    who = f" by {req.requested_by}" if req.requested_by else ""
    _end(p, run, "cancelled", f"cancelled{who}", now=now)
    # The run's changes are not put back: a later run builds its dataset from every document anyway,
    # and a cancelled run must not restart on the next tick.
    pipeline.current_run = None
    pipeline.last_run = run.summary()
    commit(p, [_put_run(run), _put_pipeline(pipeline)], [_ended_event(run)])
    _stop_jobs(p, run)
    return {"family": req.family, "run": run_id, "outcome": "cancelled", "stopped_jobs": run.stopped_jobs}


# -- following runs -------------------------------------------------------------------------------


def follow_run(p: Platform, detail_type: str, detail: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """Move a run's stage on an event of its chain, or end it."""
    run_id = detail.get("request_id")
    run = load_run(p, str(run_id)) if run_id else None
    if run is None:
        return {"outcome": "not a pipeline run"}
    fam = _families().get(run.family)
    deploys = fam is not None and deploys_to(fam.deploy, p.settings.deploy_target)
    change = step(run, detail_type, detail, deploys=deploys)
    if change is None:
        return {"run": run.run_id, "outcome": "no change", "state": run.state}
    run.model_version = change.model_version or run.model_version
    run.dataset_version = change.dataset_version or run.dataset_version
    if change.state is None:
        run.stage = change.stage or run.stage
        commit(p, [_put_run(run)], [])
        return {"run": run.run_id, "outcome": "stage", "stage": run.stage}
    _end(p, run, change.state, change.reason, now=now)
    pipeline = load_pipeline(p, run.family, now=now)
    if pipeline.current_run == run.run_id:
        pipeline.current_run = None
    pipeline.last_run = run.summary()
    commit(p, [_put_run(run), _put_pipeline(pipeline)], [_ended_event(run)])
    return {"run": run.run_id, "outcome": "ended", "state": run.state}


# -- status ---------------------------------------------------------------------------------------


def status(p: Platform, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each family: method, stage, stale reasons, next eligible and scheduled times, running job, last run."""
    at = now or _now()
    rows = []
    for fam in _families().values():
        pipeline = load_pipeline(p, fam.name, now=at)
        decision = _decision(fam, pipeline, at)
        run = load_run(p, pipeline.current_run) if pipeline.current_run else None
        running_jobs = [j.name for j in jobs_of(p, run.run_id, in_progress=True)] if run else []
        rows.append(
            {
                "family": fam.name,
                "method": fam.method,
                "on_change": fam.retrain.on_change,
                "schedule": fam.retrain.schedule,
                "stage": run.stage if run else "idle",
                "run": run.model_dump(mode="json", exclude={"staleness"}) if run else None,
                "running_jobs": running_jobs,
                "stale": {
                    "documents": pipeline.staleness.count,
                    "tokens": pipeline.staleness.tokens,
                    "reasons": pipeline.staleness.reasons(),
                    "changes": {k: c.model_dump(mode="json") for k, c in pipeline.staleness.documents.items()},
                    "first_change_at": pipeline.staleness.first_change_at,
                    "last_change_at": pipeline.staleness.last_change_at,
                },
                "decision": decision.reason,
                "next_eligible_at": _iso(decision.next_eligible_at) if decision.next_eligible_at else None,
                "next_scheduled_at": _iso(decision.next_scheduled_at) if decision.next_scheduled_at else None,
                "last_run": pipeline.last_run.model_dump(mode="json") if pipeline.last_run else None,
            }
        )
    return rows
