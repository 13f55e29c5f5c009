"""The debounce, thresholds and schedule of a family's retraining, and how runs follow their chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from docllm.pipelines import PipelineRun, StaleChange, Staleness, decide, deploys_to, rate_seconds, step
from docllm.pipelines.records import STALE_DETAIL_LIMIT
from docllm.training.families import RetrainPolicy

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _stale(n: int, tokens: int = 100, at: datetime = T0) -> Staleness:
    s = Staleness()
    for i in range(n):
        s.add(f"s3/doc-{i}.md", StaleChange(change="added", tokens=tokens, at=at.isoformat()))
    return s


def test_a_family_with_no_changes_never_starts_even_when_its_schedule_is_due() -> None:
    policy = RetrainPolicy(schedule="rate(1 day)", settle_minutes=0, min_interval_hours=0)
    d = decide(policy, Staleness(), now=T0 + timedelta(days=30), anchor=T0, running=False)
    assert not d.start and "not stale" in d.reason
    assert d.next_scheduled_at == T0 + timedelta(days=1)


def test_the_debounce_waits_for_the_settle_time_after_the_last_change() -> None:
    policy = RetrainPolicy(min_documents=2, settle_minutes=30, min_interval_hours=0)
    s = _stale(2)
    assert not decide(policy, s, now=T0 + timedelta(minutes=29), anchor=T0, running=False).start
    d = decide(policy, s, now=T0 + timedelta(minutes=30), anchor=T0, running=False)
    assert d.start and d.trigger == "change" and d.reason.startswith("2 documents changed")
    # A later change restarts the settle time.
    s.add("s3/late.md", StaleChange(change="changed", tokens=5, at=(T0 + timedelta(minutes=20)).isoformat()))
    d = decide(policy, s, now=T0 + timedelta(minutes=30), anchor=T0, running=False)
    assert not d.start and d.next_eligible_at == T0 + timedelta(minutes=50)


def test_below_the_document_threshold_the_token_threshold_can_start_it() -> None:
    policy = RetrainPolicy(min_documents=10, min_tokens=1000, settle_minutes=0, min_interval_hours=0)
    assert not decide(policy, _stale(3, tokens=100), now=T0, anchor=T0, running=False).start
    assert "below the thresholds" in decide(policy, _stale(3, tokens=100), now=T0, anchor=T0, running=False).reason
    assert decide(policy, _stale(3, tokens=400), now=T0, anchor=T0, running=False).start


def test_at_most_one_run_per_interval() -> None:
    policy = RetrainPolicy(settle_minutes=0, min_interval_hours=6)
    last = T0 - timedelta(hours=5)
    d = decide(policy, _stale(1), now=T0, anchor=last, running=False, last_run_started_at=last)
    assert not d.start and d.next_eligible_at == last + timedelta(hours=6)
    assert decide(
        policy, _stale(1), now=T0 + timedelta(hours=1), anchor=last, running=False, last_run_started_at=last
    ).start


def test_a_due_schedule_starts_a_stale_family_below_the_thresholds() -> None:
    policy = RetrainPolicy(min_documents=50, settle_minutes=0, min_interval_hours=0, schedule="rate(7 days)")
    s = _stale(1)
    assert not decide(policy, s, now=T0 + timedelta(days=6), anchor=T0, running=False).start
    d = decide(policy, s, now=T0 + timedelta(days=7), anchor=T0, running=False)
    assert d.start and d.trigger == "schedule" and "rate(7 days)" in d.reason


def test_a_running_family_does_not_start_again() -> None:
    d = decide(RetrainPolicy(settle_minutes=0, min_interval_hours=0), _stale(5), now=T0, anchor=T0, running=True)
    assert not d.start and d.reason == "a run is in progress"


def test_staleness_counts_a_document_once_with_its_newest_change_and_caps_the_listing() -> None:
    s = Staleness()
    s.add("a", StaleChange(change="added", tokens=10, at="t1"))
    s.add("a", StaleChange(change="changed", tokens=30, at="t2"))
    assert (s.count, s.tokens, s.documents["a"].change, s.first_change_at, s.last_change_at) == (
        1,
        30,
        "changed",
        "t1",
        "t2",
    )
    big = _stale(STALE_DETAIL_LIMIT + 5, tokens=1)
    assert big.count == STALE_DETAIL_LIMIT + 5 and len(big.documents) == STALE_DETAIL_LIMIT
    assert big.tokens == STALE_DETAIL_LIMIT + 5  # the totals count every document, listed or not
    assert f"{STALE_DETAIL_LIMIT} listed" in big.reasons()


def test_rate_seconds_and_a_non_rate_expression() -> None:
    assert rate_seconds("rate(7 days)") == 7 * 86400
    with pytest.raises(ValueError):
        rate_seconds("cron(0 12 * * ? *)")


@pytest.mark.parametrize(
    ("deploy", "target", "expected"),
    [(["default"], "local", True), ([], "local", False), (["sagemaker"], "local", False),
     (["sagemaker"], "sagemaker", True), (["default"], "none", False)],
)  # fmt: skip
def test_deploys_to(deploy: list[str], target: str, expected: bool) -> None:
    assert deploys_to(deploy, target) is expected


def _run(method: str = "pretrain") -> PipelineRun:
    return PipelineRun(
        run_id="r1", family="f", method=method, trigger="change", reason="x", staleness=Staleness(),
        config_sha256="0" * 64, config_version="2-abc", started_at=T0.isoformat(),
    )  # fmt: skip


def test_a_run_moves_through_its_stages_and_ends_on_the_decision() -> None:
    run = _run()
    built = step(run, "Dataset Built", {"dataset_version": "ds-1"}, deploys=True)
    assert built is not None and built.stage == "tokenizer" and built.dataset_version == "ds-1"
    assert step(_run("lora"), "Dataset Built", {}, deploys=True).stage == "train"  # type: ignore[union-attr]
    assert step(run, "Model Trained", {"model_version": "m1"}, deploys=True).stage == "evaluate"  # type: ignore[union-attr]
    approved = {"model_version": "m1", "champion": "m1"}
    assert step(run, "Model Approved", approved, deploys=True).stage == "deploy"  # type: ignore[union-attr]
    not_deployed = step(run, "Model Approved", approved, deploys=False)
    assert not_deployed is not None and not_deployed.state == "decided"
    rejected = step(run, "Model Rejected", {"model_version": "m1"}, deploys=True)
    assert rejected is not None and rejected.state == "decided" and rejected.model_version == "m1"
    failed = step(run, "Stage Failed", {"stage": "train", "reason": "oom"}, deploys=True)
    assert failed is not None and failed.state == "failed" and "oom" in failed.reason
    assert step(run, "Model Deployed", {"model_version": "m1", "target": "local"}, deploys=True).state == "deployed"  # type: ignore[union-attr]


def test_an_ended_run_ignores_late_events() -> None:
    run = _run()
    run.state = "cancelled"
    assert step(run, "Model Trained", {"model_version": "m1"}, deploys=True) is None
    assert step(run, "Stage Failed", {"stage": "train", "reason": "stopped"}, deploys=True) is None
