"""The pipelines stage on the local platform's ports: document changes mark only the matching families
stale, the tick starts them after the debounce, runs follow their chain, a manual run supersedes,
a cancel stops the run's job and nothing of the run is completed or registered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform
from docllm.events.contracts import (
    DocumentProcessed,
    DocumentRemoved,
    EvaluationCompleted,
    PipelineCancelRequested,
    PipelineRunRequested,
    to_bus,
)
from docllm.pipelines import PIPELINES_PK, RUNS_PK, FamilyPipeline, PipelineRun
from docllm.ports.jobs import JobDescription, JobRunner, JobSpec
from docllm.records import JOBS_PK, JobRecord
from docllm.service_layer import gate, jobs
from docllm.service_layer.pipelines import TICK, handle_pipelines_event, run_cancelled, status
from docllm.settings import Settings
from tests.conftest import REPO

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FAMILIES = """
version: 7
families:
  s3-fam:
    preset: tiny
    services: [s3]
    budget: {tokens: 1000}
    retrain: {min_documents: 1, settle_minutes: 10, min_interval_hours: 0}
  iam-fam:
    preset: tiny
    services: [iam]
    budget: {tokens: 1000}
    retrain: {min_documents: 2, settle_minutes: 0, min_interval_hours: 0}
    deploy: []
  manual-only:
    preset: tiny
    services: [s3]
    budget: {tokens: 1000}
    retrain: {on_change: false}
"""


class StoppingRunner(JobRunner):
    """Records stop calls; every job is in progress until stopped."""

    def __init__(self) -> None:
        self.stopped: list[str] = []

    def submit(self, spec: JobSpec) -> str:
        return f"arn:{spec.name}"

    def describe(self, name: str) -> JobDescription:
        return JobDescription(name=name, status="Stopped" if name in self.stopped else "InProgress")

    def stop(self, name: str) -> None:
        self.stopped.append(name)


@pytest.fixture
def p(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    families = tmp_path / "families.yaml"
    families.write_text(FAMILIES)
    monkeypatch.setenv("DOCLLM_FAMILIES_FILE", str(families))
    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path / "data")}),
        template=REPO / "template.yaml",
    )
    platform.__dict__["jobs"] = StoppingRunner()  # the cached port, replaced
    return platform


def _processed(key: str, service: str, *, sha: str = "a", tokens: int = 100, revision: str = "r1") -> dict[str, Any]:
    return to_bus(
        DocumentProcessed(
            doc_key=key, bucket="raw", version_id="v", sha256=sha * 64, service=service, title=key, language="en",
            content_format="markdown", chunks_uri=f"s3://processed/{key}.jsonl", chunk_count=1,
            token_estimate=tokens, revision=revision,
        )
    ).to_wire()  # fmt: skip


def _events(p: Platform, detail_type: str) -> list[dict[str, Any]]:
    return [e.body["detail"] for e in p.event_log.since(0) if e.detail_type == detail_type]


def _pipeline(p: Platform, family: str) -> FamilyPipeline:
    item = p.state.get(PIPELINES_PK, family)
    assert item is not None
    return FamilyPipeline.model_validate(item)


def _run(p: Platform, run_id: str) -> PipelineRun:
    item = p.state.get(RUNS_PK, run_id)
    assert item is not None
    return PipelineRun.model_validate(item)


def _tick(p: Platform, at: datetime) -> dict[str, Any]:
    return handle_pipelines_event(p, {"source": "docllm.schedule", "detail-type": TICK, "detail": {}}, now=at)


def test_changes_mark_only_matching_families_idempotently_and_same_bytes_are_no_change(p: Platform) -> None:
    out = handle_pipelines_event(p, _processed("s3/a.md", "s3"), now=T0)
    assert out["families"] == {"s3-fam": "added"}  # not iam-fam (filter), not manual-only (on_change false)
    assert handle_pipelines_event(p, _processed("s3/a.md", "s3"), now=T0)["families"] == {"s3-fam": "already seen"}
    same = handle_pipelines_event(p, _processed("s3/a.md", "s3", revision="r2"), now=T0)
    assert same["families"] == {"s3-fam": "same content"}
    changed = handle_pipelines_event(p, _processed("s3/a.md", "s3", sha="b", tokens=40, revision="r3"), now=T0)
    assert changed["families"] == {"s3-fam": "changed"}
    staleness = _pipeline(p, "s3-fam").staleness
    assert (staleness.count, staleness.tokens, staleness.documents["s3/a.md"].change) == (1, 40, "changed")
    removed = to_bus(DocumentRemoved(doc_key="s3/a.md", bucket="raw", revision="r4")).to_wire()
    assert handle_pipelines_event(p, removed, now=T0)["families"] == {"s3-fam": "removed"}
    # A removal of a document no family tracked concerns none.
    other = to_bus(DocumentRemoved(doc_key="ec2/x.md", bucket="raw", revision="r5")).to_wire()
    assert handle_pipelines_event(p, other, now=T0)["families"] == {}
    marked = _events(p, "Family Marked Stale")
    assert [(m["family"], m["change"]) for m in marked] == [
        ("s3-fam", "added"),
        ("s3-fam", "changed"),
        ("s3-fam", "removed"),
    ]
    assert p.state.get(PIPELINES_PK, "iam-fam") is None


def test_the_tick_starts_a_family_once_after_its_debounce_and_the_run_follows_its_chain(p: Platform) -> None:
    handle_pipelines_event(p, _processed("s3/a.md", "s3"), now=T0)
    handle_pipelines_event(p, _processed("iam/r.md", "iam"), now=T0)  # iam-fam needs 2 documents
    assert _tick(p, T0 + timedelta(minutes=5))["started"] == {}  # s3-fam settles for 10 minutes
    ticked = _tick(p, T0 + timedelta(minutes=10))
    assert list(ticked["started"]) == ["s3-fam"] and "below the thresholds" in ticked["waiting"]["iam-fam"]
    run_id = ticked["started"]["s3-fam"]
    assert _tick(p, T0 + timedelta(minutes=20))["started"] == {}  # one run at a time, and nothing new
    (started,) = _events(p, "Pipeline Run Started")
    (requested,) = _events(p, "Training Requested")
    assert requested == {**requested, "family": "s3-fam", "request_id": run_id}
    assert started["documents"] == 1 and started["config_version"].startswith("7-")
    run = _run(p, run_id)
    assert run.staleness.count == 1 and run.state == "running" and run.stage == "dataset"
    assert not _pipeline(p, "s3-fam").staleness.stale  # the changes moved into the run

    def chain(detail_type: str, **detail: Any) -> None:
        body = {"source": "docllm.x", "detail-type": detail_type, "detail": {"request_id": run_id, **detail}}
        handle_pipelines_event(p, body, now=T0 + timedelta(minutes=30))

    chain("Dataset Built", dataset_version="ds-1")
    assert (_run(p, run_id).stage, _run(p, run_id).dataset_version) == ("tokenizer", "ds-1")
    chain("Model Trained", model_version="m1")
    chain("Model Approved", model_version="m1", champion="m1")
    assert _run(p, run_id).stage == "deploy"  # s3-fam deploys by default on the local target
    chain("Model Deployed", model_version="m1", target="local")
    run = _run(p, run_id)
    assert (run.state, run.model_version) == ("deployed", "m1")
    pipeline = _pipeline(p, "s3-fam")
    assert pipeline.current_run is None and pipeline.last_run is not None and pipeline.last_run.state == "deployed"
    (ended,) = _events(p, "Pipeline Run Ended")
    assert ended["state"] == "deployed" and ended["request_id"] == run_id


def test_a_family_that_is_not_deployed_ends_decided_at_the_gate(p: Platform) -> None:
    for key in ("iam/a.md", "iam/b.md"):
        handle_pipelines_event(p, _processed(key, "iam", sha=key[4]), now=T0)
    run_id = _tick(p, T0)["started"]["iam-fam"]
    body = {"source": "docllm.gate", "detail-type": "Model Approved",
            "detail": {"request_id": run_id, "model_version": "m", "champion": "m"}}  # fmt: skip
    handle_pipelines_event(p, body, now=T0)
    assert _run(p, run_id).state == "decided"


def _job(p: Platform, name: str, run_id: str, stage: str = "train") -> None:
    record = JobRecord(
        name=name, stage=stage, output_uri="s3://a/b/", context={"request_id": run_id, "family": "s3-fam"}
    )
    p.state.put(JOBS_PK, name, record.model_dump(mode="json"))


def test_a_manual_run_supersedes_the_run_in_progress_and_stops_its_job(p: Platform) -> None:
    handle_pipelines_event(p, _processed("s3/a.md", "s3"), now=T0)
    first = _tick(p, T0 + timedelta(minutes=10))["started"]["s3-fam"]
    _job(p, "docllm-dev-train-s3-fam-1", first)
    request = PipelineRunRequested(family="s3-fam", requested_by="alice")
    out = handle_pipelines_event(p, to_bus(request).to_wire(), now=T0 + timedelta(minutes=11))
    assert out == {**out, "outcome": "started", "superseded": first}
    assert p.jobs.stopped == ["docllm-dev-train-s3-fam-1"]  # type: ignore[attr-defined]
    old, new = _run(p, first), _run(p, request.request_id)
    assert (
        old.state == "superseded"
        and old.superseded_by == new.run_id
        and old.stopped_jobs == ["docllm-dev-train-s3-fam-1"]
    )
    assert new.trigger == "manual" and "alice" in new.reason and new.staleness.count == 1  # the old run's changes
    assert _pipeline(p, "s3-fam").current_run == new.run_id
    # A redelivered request starts nothing twice.
    again = handle_pipelines_event(p, to_bus(request).to_wire(), now=T0 + timedelta(minutes=12))
    assert again["outcome"] == "already started" and len(_events(p, "Training Requested")) == 2
    # The superseded run's late events change nothing.
    late = {"source": "docllm.pipeline", "detail-type": "Stage Failed",
            "detail": {"request_id": first, "stage": "train", "subject": "x", "reason": "stopped"}}  # fmt: skip
    assert handle_pipelines_event(p, late, now=T0)["outcome"] == "no change"


def test_a_cancelled_run_completes_nothing_and_registers_nothing(p: Platform) -> None:
    request = PipelineRunRequested(family="s3-fam")
    handle_pipelines_event(p, to_bus(request).to_wire(), now=T0)
    run_id = request.request_id
    _job(p, "docllm-dev-train-s3-fam-9", run_id)
    cancel = PipelineCancelRequested(family="s3-fam", run_id=run_id, requested_by="bob")
    out = handle_pipelines_event(p, to_bus(cancel).to_wire(), now=T0 + timedelta(minutes=1))
    assert out["outcome"] == "cancelled" and out["stopped_jobs"] == ["docllm-dev-train-s3-fam-9"]
    assert run_cancelled(p, run_id) and _run(p, run_id).state == "cancelled"
    # A redelivered cancel, or one naming an older run, cancels nothing else.
    assert handle_pipelines_event(p, to_bus(cancel).to_wire(), now=T0)["outcome"] == "no run in progress"
    # The stopped training job exits cleanly and reports Completed: it is recorded Stopped, nothing follows.
    seq = p.event_log.last(1)[0].seq
    state_change = {
        "version": "0", "id": "1", "account": "0", "time": "2025-03-01T12:00:00Z", "region": "local", "resources": [],
        "source": "aws.sagemaker", "detail-type": "SageMaker Training Job State Change",
        "detail": {"TrainingJobName": "docllm-dev-train-s3-fam-9", "TrainingJobStatus": "Completed"},
    }  # fmt: skip
    assert jobs.handle_job_state(p, state_change)["outcome"] == "run cancelled: recorded Stopped"
    record = JobRecord.model_validate(p.state.get(JOBS_PK, "docllm-dev-train-s3-fam-9"))
    assert record.status == "Stopped" and "cancelled" in (record.failure_reason or "")
    assert [e.detail_type for e in p.event_log.since(seq)] == []
    assert p.state.get("models", "anything") is None
    # An evaluation that finished for the run is not registered by the gate.
    ev = EvaluationCompleted(
        model_version="m9", family="s3-fam", evaluation_id="e9", report_uri="s3://a/r.json", report_sha256="0" * 64,
        html_uri="s3://a/r.html", request_id=run_id,
    )  # fmt: skip
    assert gate.handle_gate_event(p, to_bus(ev).to_wire())["outcome"] == "run cancelled: not registered"
    assert p.registry.list("s3-fam") == []
    # A job a stage launches for the cancelled run afterwards is never submitted.
    spec = JobSpec(name="docllm-dev-evaluate-x-1", image="evaluate", entry_point="m", output_uri="s3://a/o/")
    assert jobs.launch(p, spec, "evaluate", {"request_id": run_id}) == "run cancelled"
    assert JobRecord.model_validate(p.state.get(JOBS_PK, spec.name)).status == "Stopped"


def test_status_shows_stage_stale_reasons_next_times_and_running_jobs(p: Platform) -> None:
    handle_pipelines_event(p, _processed("iam/a.md", "iam"), now=T0)
    rows = {r["family"]: r for r in status(p, now=T0)}
    iam = rows["iam-fam"]
    assert iam["stage"] == "idle" and iam["stale"]["documents"] == 1 and "below the thresholds" in iam["decision"]
    request = PipelineRunRequested(family="s3-fam")
    handle_pipelines_event(p, to_bus(request).to_wire(), now=T0)
    _job(p, "docllm-dev-train-s3-fam-2", request.request_id)
    s3 = {r["family"]: r for r in status(p, now=T0)}["s3-fam"]
    assert s3["stage"] == "dataset" and s3["running_jobs"] == ["docllm-dev-train-s3-fam-2"]
    assert s3["run"]["run_id"] == request.request_id and rows["manual-only"]["on_change"] is False
