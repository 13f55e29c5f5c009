"""Job launch by deterministic name: a lost CreateTrainingJob response, a submit that never
happened and a refused spec each end the right way on the redelivery."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.bootstrap import Platform
from docllm.exceptions import ConfigurationError, ConflictError, NotFoundError, TransientError
from docllm.ports.jobs import JobDescription, JobRunner, JobSpec
from docllm.records import JOBS_PK
from docllm.service_layer.jobs import job_name, launch
from docllm.service_layer.outbox import pending
from docllm.settings import Settings
from tests.conftest import REPO


class FlakyRunner(JobRunner):
    """Records jobs like SageMaker; ``lose_next`` drops the response of a submit that succeeded,
    ``fail_next`` fails one before it reaches the service."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobSpec] = {}
        self.lose_next = self.fail_next = False
        self.refuse: Exception | None = None

    def submit(self, spec: JobSpec) -> str:
        if self.refuse is not None:
            raise self.refuse
        if self.fail_next:
            self.fail_next = False
            raise TransientError("throttled")
        if spec.name in self.jobs:
            raise ConflictError(f"ResourceInUse: {spec.name}")
        self.jobs[spec.name] = spec
        if self.lose_next:
            self.lose_next = False
            raise TransientError("connection reset after the request was sent")
        return f"arn:{spec.name}"

    def describe(self, name: str) -> JobDescription:
        if name not in self.jobs:
            raise NotFoundError(name)
        return JobDescription(name=name, status="InProgress")

    def stop(self, name: str) -> None:
        pass


@pytest.fixture
def p(tmp_path: Path) -> Platform:
    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path), "DOCLLM_STAGE": "prod"}),
        template=REPO / "template.yaml",
    )
    platform.__dict__["jobs"] = FlakyRunner()  # the cached port, replaced
    return platform


def spec_for(p: Platform) -> JobSpec:
    name = job_name("tok", "0123456789abcdef0123", p)
    return JobSpec(name=name, image="tokenizer", entry_point="x", output_uri="s3://b/out/")


def test_job_names_carry_the_deployment_stage(p: Platform) -> None:
    assert spec_for(p).name == "docllm-prod-tok-0123456789abcdef-1"


def test_a_lost_submit_response_is_adopted_on_the_redelivery(p: Platform) -> None:
    runner: FlakyRunner = p.jobs  # type: ignore[assignment]
    runner.lose_next = True
    spec = spec_for(p)
    with pytest.raises(TransientError):
        launch(p, spec, "tokenizer", {})
    assert p.state.get(JOBS_PK, spec.name) is not None  # the record stays: its completion is ours
    assert launch(p, spec, "tokenizer", {}) == "already-launched"
    assert list(runner.jobs) == [spec.name]


def test_a_submit_that_never_reached_the_service_is_made_on_the_redelivery(p: Platform) -> None:
    runner: FlakyRunner = p.jobs  # type: ignore[assignment]
    runner.fail_next = True
    spec = spec_for(p)
    with pytest.raises(TransientError):
        launch(p, spec, "tokenizer", {})
    assert runner.jobs == {}
    assert launch(p, spec, "tokenizer", {}) == "launched"
    assert list(runner.jobs) == [spec.name]


def test_a_refused_spec_fails_the_stage_at_once_with_its_request_id(p: Platform) -> None:
    runner: FlakyRunner = p.jobs  # type: ignore[assignment]
    runner.refuse = ConfigurationError("instance type ml.p5.48xlarge is not allowed")
    spec = spec_for(p)
    with pytest.raises(ConfigurationError):
        launch(p, spec, "tokenizer", {"request_id": "req-1"})
    assert p.state.get(JOBS_PK, spec.name)["status"] == "Failed"
    events = [e for _, e in pending(p)] + [e.body for e in p.event_log.last(10)]
    failed = [e["detail"] for e in events if e["detail-type"] == "Stage Failed"]
    assert failed and failed[0]["request_id"] == "req-1" and "not allowed" in failed[0]["reason"]
    # The next request gets a fresh attempt name rather than the failed one.
    assert job_name("tok", "0123456789abcdef0123", p).endswith("-2")
