"""Cancelling and superseding stop a run's jobs only after the ended run is committed, a stop that
fails is finished by the message's redelivery, and a job submitted while its run was being cancelled
is stopped by the launch itself (docs/pipelines.md, "Cancelling and superseding")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from docllm.bootstrap import Platform
from docllm.events.contracts import PipelineCancelRequested, PipelineRunRequested, to_bus
from docllm.exceptions import NotFoundError, TransientError
from docllm.ports.jobs import JobDescription, JobRunner, JobSpec
from docllm.records import JOBS_PK, JobRecord
from docllm.service_layer import jobs
from docllm.service_layer.pipelines import handle_pipelines_event, run_cancelled
from docllm.settings import Settings
from tests.conftest import REPO

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FAMILIES = """
version: 1
families:
  s3-fam:
    preset: tiny
    services: [s3]
    budget: {tokens: 1000}
"""


class Runner(JobRunner):
    """Jobs run until stopped; each stop records whether the run was already cancelled in the state
    (what the job's end will find); ``fail_stops`` stops fail with a transient error first."""

    def __init__(self) -> None:
        self.p: Platform | None = None
        self.submitted: list[str] = []
        self.stops: list[tuple[str, bool]] = []
        self.fail_stops = 0
        self.on_submit: list[JobSpec] = []

    def submit(self, spec: JobSpec) -> str:
        self.on_submit.append(spec)
        self.submitted.append(spec.name)
        return f"arn:{spec.name}"

    def describe(self, name: str) -> JobDescription:
        if name not in self.submitted:
            raise NotFoundError(name)
        return JobDescription(name=name, status="InProgress")

    def stop(self, name: str) -> None:
        if name not in self.submitted:
            raise NotFoundError(name)
        if self.fail_stops:
            self.fail_stops -= 1
            raise TransientError("ThrottlingException")
        assert self.p is not None
        record = JobRecord.model_validate(self.p.state.get(JOBS_PK, name))
        self.stops.append((name, run_cancelled(self.p, record.context.get("request_id"))))


@pytest.fixture
def p(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    families = tmp_path / "families.yaml"
    families.write_text(FAMILIES)
    monkeypatch.setenv("DOCLLM_FAMILIES_FILE", str(families))
    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path / "data")}),
        template=REPO / "template.yaml",
    )
    runner = Runner()
    runner.p = platform
    platform.__dict__["jobs"] = runner  # the cached port, replaced
    return platform


def _start(p: Platform) -> str:
    request = PipelineRunRequested(family="s3-fam")
    handle_pipelines_event(p, to_bus(request).to_wire(), now=T0)
    return request.request_id


def _running_job(p: Platform, run_id: str, name: str) -> JobSpec:
    spec = JobSpec(name=name, image="train", entry_point="m", output_uri="s3://a/o/")
    assert jobs.launch(p, spec, "train", {"request_id": run_id, "family": "s3-fam"}) == "launched"
    return spec


def test_a_cancel_commits_the_cancelled_run_before_it_stops_the_job(p: Platform) -> None:
    run_id = _start(p)
    _running_job(p, run_id, "docllm-dev-train-s3-fam-1")
    cancel = PipelineCancelRequested(family="s3-fam", run_id=run_id)
    out = handle_pipelines_event(p, to_bus(cancel).to_wire(), now=T0 + timedelta(minutes=1))
    assert out["outcome"] == "cancelled" and out["stopped_jobs"] == ["docllm-dev-train-s3-fam-1"]
    # When the stop went out, the job's end would already have found its run cancelled.
    assert p.jobs.stops == [("docllm-dev-train-s3-fam-1", True)]  # type: ignore[attr-defined]


def test_a_supersede_commits_the_superseded_run_before_it_stops_the_job(p: Platform) -> None:
    first = _start(p)
    _running_job(p, first, "docllm-dev-train-s3-fam-1")
    out = handle_pipelines_event(
        p, to_bus(PipelineRunRequested(family="s3-fam")).to_wire(), now=T0 + timedelta(minutes=1)
    )
    assert out["superseded"] == first
    assert p.jobs.stops == [("docllm-dev-train-s3-fam-1", True)]  # type: ignore[attr-defined]


def test_a_stop_that_fails_after_the_commit_is_finished_by_the_redelivery(p: Platform) -> None:
    run_id = _start(p)
    _running_job(p, run_id, "docllm-dev-train-s3-fam-1")
    p.jobs.fail_stops = 1  # type: ignore[attr-defined]
    cancel = to_bus(PipelineCancelRequested(family="s3-fam", run_id=run_id)).to_wire()
    with pytest.raises(TransientError):
        handle_pipelines_event(p, cancel, now=T0 + timedelta(minutes=1))
    assert run_cancelled(p, run_id) and p.jobs.stops == []  # type: ignore[attr-defined]
    # The message is redelivered: the run has ended, its job is stopped all the same.
    assert handle_pipelines_event(p, cancel, now=T0 + timedelta(minutes=2))["outcome"] == "no run in progress"
    assert p.jobs.stops == [("docllm-dev-train-s3-fam-1", True)]  # type: ignore[attr-defined]


def test_a_supersede_whose_stop_failed_is_finished_by_the_redelivered_request(p: Platform) -> None:
    first = _start(p)
    _running_job(p, first, "docllm-dev-train-s3-fam-1")
    p.jobs.fail_stops = 1  # type: ignore[attr-defined]
    request = to_bus(PipelineRunRequested(family="s3-fam")).to_wire()
    with pytest.raises(TransientError):
        handle_pipelines_event(p, request, now=T0 + timedelta(minutes=1))
    again = handle_pipelines_event(p, request, now=T0 + timedelta(minutes=2))
    assert again["outcome"] == "already started"
    assert p.jobs.stops == [("docllm-dev-train-s3-fam-1", True)]  # type: ignore[attr-defined]


def test_a_job_submitted_while_its_run_was_cancelled_is_stopped_by_the_launch(p: Platform) -> None:
    run_id = _start(p)
    runner = p.jobs
    spec = JobSpec(name="docllm-dev-train-s3-fam-2", image="train", entry_point="m", output_uri="s3://a/o/")
    original = runner.submit

    def submit_while_cancelled(s: JobSpec) -> str:
        # The cancel arrives after the launch recorded the job, before the job exists: it cannot stop it.
        cancel = PipelineCancelRequested(family="s3-fam", run_id=run_id)
        assert handle_pipelines_event(p, to_bus(cancel).to_wire(), now=T0)["outcome"] == "cancelled"
        assert runner.stops == []  # type: ignore[attr-defined]
        return original(s)

    runner.submit = submit_while_cancelled  # type: ignore[method-assign,assignment]
    assert jobs.launch(p, spec, "train", {"request_id": run_id}) == "run cancelled"
    assert runner.stops == [("docllm-dev-train-s3-fam-2", True)]  # type: ignore[attr-defined]


def test_a_cancel_stops_a_bedrock_customization_job_through_bedrock_not_sagemaker(p: Platform) -> None:
    run_id = _start(p)
    name = "docllm-dev-customize-s3-fam-1"
    record = JobRecord(
        name=name, stage="customize", status="InProgress", output_uri="s3://a/o/", context={"request_id": run_id}
    )
    p.state.put(JOBS_PK, name, record.model_dump(mode="json"))
    stopped: list[str] = []

    class Customizer:
        def stop(self, job: str) -> None:
            stopped.append(job)

    p.__dict__["customizer"] = Customizer()  # the cached port, replaced
    cancel = PipelineCancelRequested(family="s3-fam", run_id=run_id)
    out = handle_pipelines_event(p, to_bus(cancel).to_wire(), now=T0 + timedelta(minutes=1))
    assert out["outcome"] == "cancelled"
    assert stopped == [name]
    assert p.jobs.stops == []  # type: ignore[attr-defined]
