"""What the deploy stage records and announces for each canary rule, on the local platform's state,
bus and registry — with stand-in engines (no processes: ``test_canary_rollout.py`` runs real ones)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform
from docllm.events.contracts import DeploymentRequested, ModelApproved, ModelRejected, to_bus
from docllm.monitoring.alarms import AlarmDefinition, AlarmState, state_change_event
from docllm.monitoring.evaluator import AlarmStore
from docllm.ports.state import StateStore
from docllm.service_layer import deploy
from docllm.settings import Settings
from tests.conftest import REPO
from tests.support.deployable import FAMILY, seed_deployable

V1, V2, V3 = "tiny-s3-20260101-0001", "tiny-s3-20260102-0002", "tiny-s3-20260103-0003"


class StandInEngines:
    """LocalEngines' contract with the deploy stage: start is idempotent per version, ``changing``
    retires what the committed record no longer names."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self.running: set[str] = set()
        self.started: list[str] = []
        self.on_bake_end: Any = None

    def start(self, model_version: str, export_uri: str) -> dict[str, Any]:
        if model_version not in self.running:
            self.started.append(model_version)
            self.running.add(model_version)
        return {"url": f"http://127.0.0.1:1/{model_version}", "pid": 1, "export_dir": f"/engines/{model_version}"}

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        yield
        record = self._state.get(deploy.ENDPOINTS_PK, "local") or {}
        named = {record.get("model_version"), (record.get("canary") or {}).get("model_version")}
        self.running &= named


@pytest.fixture
def p(tmp_path: Path) -> Platform:
    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path / "data")}),
        template=REPO / "template.yaml",
    )
    export = tmp_path / "export"
    export.mkdir()
    (export / "config.json").write_text("{}")
    seed_deployable(platform, export, V1, V2, V3)
    platform.__dict__["engines"] = StandInEngines(platform.state)
    return platform


def engines(p: Platform) -> StandInEngines:
    e = p.engines
    assert isinstance(e, StandInEngines)
    return e


def events(p: Platform, detail_type: str) -> list[dict[str, Any]]:
    return [e.body["detail"] for e in p.event_log.since(0) if e.detail_type == detail_type]


def endpoint(p: Platform) -> dict[str, Any]:
    record = p.state.get(deploy.ENDPOINTS_PK, "local")
    assert record is not None
    return record


def test_a_canary_is_recorded_on_the_endpoint_and_announced(p: Platform) -> None:
    deploy.deploy(p, V1, "local", "r1")
    out = deploy.deploy(p, V2, "local", "r2", canary_percent=10, bake_s=300)
    assert out["outcome"] == "canary started" and out["canary_percent"] == 10
    record = endpoint(p)
    canary = record["canary"]
    assert record["model_version"] == V1 and record["url"].endswith(V1)
    assert canary["model_version"] == V2 and canary["weight"] == pytest.approx(0.1)
    assert canary["url"].endswith(V2) and canary["started_at"] < canary["bake_until"]
    (started,) = events(p, "Canary Started")
    assert started["stable_version"] == V1 and started["canary_percent"] == 10
    assert started["bake_until"] == canary["bake_until"] and started["request_id"] == "r2"
    assert [d["model_version"] for d in events(p, "Model Deployed")] == [V1]  # not deployed until promoted
    assert deploy.serving_versions(p, "local") == [V1, V2]
    assert engines(p).running == {V1, V2}
    (baking,) = [d for d in deploy.deployments(p) if d["model_version"] == V2]
    assert (baking["status"], baking["strategy"], baking["previous_version"]) == ("Baking", "canary", V1)


def test_the_canary_request_event_carries_its_share_and_bake(p: Platform) -> None:
    deploy.deploy(p, V1, "local", "r1")
    request = DeploymentRequested(model_version=V2, target="local", canary_percent=25, bake_s=60)
    out = deploy.handle_deploy_event(p, to_bus(request).to_wire())
    assert out["outcome"] == "canary started"
    assert endpoint(p)["canary"]["weight"] == pytest.approx(0.25) and endpoint(p)["canary"]["bake_s"] == 60
    # Redelivered: nothing changes.
    assert deploy.handle_deploy_event(p, to_bus(request).to_wire())["outcome"] == "already baking as a canary"
    assert len(events(p, "Canary Started")) == 1 and engines(p).started == [V1, V2]


def test_promotion_records_the_deployment_and_retires_the_old_engine(p: Platform) -> None:
    deploy.deploy(p, V1, "local", "r1")
    deploy.deploy(p, V2, "local", "r2", canary_percent=10, bake_s=300)
    assert deploy.promote_canary(p, "local", model_version=V3)["outcome"] == f"no canary of {V3} to promote"
    out = deploy.promote_canary(p, "local")
    assert out == {"model": V2, "target": "local", "outcome": "promoted", "replaced": V1}
    record = endpoint(p)
    assert (record["model_version"], record["previous_version"], record["canary"]) == (V2, V1, None)
    assert record["url"].endswith(V2) and record["endpoint"] == record["url"]
    deployed = events(p, "Model Deployed")[-1]
    assert (deployed["model_version"], deployed["previous_version"], deployed["request_id"]) == (V2, V1, "r2")
    assert deployed["deployment_id"] == record["deployment_id"]
    assert sorted((d["model_version"], d["status"]) for d in deploy.deployments(p)) == [
        (V1, "InService"),
        (V2, "InService"),
    ]
    assert engines(p).running == {V2}
    assert deploy.promote_canary(p, "local")["outcome"] == "no canary to promote"
    # The canary's request redelivered after its promotion: already done.
    again = DeploymentRequested(model_version=V2, target="local", canary_percent=10, bake_s=300, request_id="r2")
    assert deploy.handle_deploy_event(p, to_bus(again).to_wire())["outcome"] == "already serving all traffic"


def test_an_abort_keeps_the_stable_version_and_a_redelivered_request_does_not_restart_the_canary(
    p: Platform,
) -> None:
    deploy.deploy(p, V1, "local", "r1")
    deploy.deploy(p, V2, "local", "r2", canary_percent=10, bake_s=300)
    assert deploy.abort_canary(p, "local", "x", model_version=V3)["outcome"] == f"no canary of {V3} to abort"
    out = deploy.abort_canary(p, "local", "docllm-dev-serving-5xx-rate@" + V2, model_version=V2)
    assert out == {"model": V2, "target": "local", "outcome": "canary aborted", "serving": V1}
    assert endpoint(p)["canary"] is None and engines(p).running == {V1}
    (aborted,) = events(p, "Canary Aborted")
    assert (aborted["model_version"], aborted["stable_version"], aborted["family"]) == (V2, V1, FAMILY)
    assert aborted["reason"] == "docllm-dev-serving-5xx-rate@" + V2
    (canary,) = [d for d in deploy.deployments(p) if d["model_version"] == V2]
    assert (canary["status"], canary["reason"]) == ("Aborted", aborted["reason"])
    again = deploy.deploy(p, V2, "local", "r2", canary_percent=10, bake_s=300)
    assert again["outcome"] == "canary already Aborted"
    assert engines(p).started == [V1, V2] and deploy.serving_versions(p, "local") == [V1]


def test_a_plain_deployment_while_a_canary_bakes_replaces_both(p: Platform) -> None:
    deploy.deploy(p, V1, "local", "r1")
    deploy.deploy(p, V2, "local", "r2", canary_percent=10, bake_s=300)
    out = deploy.deploy(p, V3, "local", "r3")
    assert out["outcome"] == "deployed"
    record = endpoint(p)
    assert (record["model_version"], record["previous_version"], record["canary"]) == (V3, V1, None)
    assert engines(p).running == {V3}
    (aborted,) = events(p, "Canary Aborted")
    assert aborted["model_version"] == V2 and aborted["stable_version"] == V3
    assert aborted["reason"] == f"replaced by the deployment of {V3} (all traffic)"
    # (sorted: with stand-in engines two deployments may start within the same millisecond)
    assert sorted((d["model_version"], d["status"]) for d in deploy.deployments(p)) == [
        (V1, "InService"),
        (V2, "Replaced"),
        (V3, "InService"),
    ]


def test_a_new_canary_replaces_the_one_in_progress(p: Platform) -> None:
    deploy.deploy(p, V1, "local", "r1")
    deploy.deploy(p, V2, "local", "r2", canary_percent=10, bake_s=300)
    deploy.deploy(p, V3, "local", "r3", canary_percent=20, bake_s=300)
    assert deploy.serving_versions(p, "local") == [V1, V3] and engines(p).running == {V1, V3}
    assert [d["model_version"] for d in events(p, "Canary Started")] == [V2, V3]
    (aborted,) = events(p, "Canary Aborted")
    assert aborted["model_version"] == V2 and aborted["reason"] == f"replaced by a canary of {V3}"


def set_alarm(p: Platform, name: str, value: str) -> None:
    """An alarm state as the local evaluator stores it (``alarms.db``)."""
    definition = AlarmDefinition.from_cfn(
        {"AlarmName": name, "Namespace": "docllm", "MetricName": "AskServerErrors", "Statistic": "Sum",
         "Period": 10, "EvaluationPeriods": 1, "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold",
         "Dimensions": [{"Name": "Target", "Value": "local"}]}
    )  # fmt: skip
    store = AlarmStore(p.data_dir / "alarms.db")
    stored = store.get(name)
    previous = stored.state if stored else AlarmState.initial(time.time())
    current = AlarmState(value=value, reason="test", timestamp=datetime.now(UTC))
    store.record(definition, previous, current, state_change_event(definition, previous, current))


def test_the_bake_end_promotes_only_when_the_canarys_alarms_are_quiet(p: Platform) -> None:
    deploy.deploy(p, V1, "local", "r1")
    deploy.deploy(p, V2, "local", "r2", canary_percent=10, bake_s=300)
    assert deploy.conclude_canary(p, "local") is None  # still baking
    assert deploy.firing_alarms(p, V2) == []  # no evaluation yet: unknown counts as quiet
    set_alarm(p, f"docllm-dev-serving-5xx-rate@{V2}", "ALARM")
    set_alarm(p, "docllm-dev-serving-5xx-rate", "OK")
    set_alarm(p, f"docllm-dev-drift-oov-rate@{V2}", "ALARM")  # drift notifies only
    assert deploy.firing_alarms(p, V2) == [f"docllm-dev-serving-5xx-rate@{V2}"]
    assert deploy.firing_alarms(p, V1) == []
    later = "2999-01-01T00:00:00.000+00:00"
    concluded = deploy.conclude_canary(p, "local", now=later)
    assert concluded is not None and concluded["outcome"] == "bake over, alarms in ALARM: not promoted"
    assert concluded["alarms"] == [f"docllm-dev-serving-5xx-rate@{V2}"]
    assert deploy.serving_versions(p, "local") == [V1, V2]
    set_alarm(p, f"docllm-dev-serving-5xx-rate@{V2}", "OK")  # back to OK: the next look promotes
    concluded = deploy.conclude_canary(p, "local", now=later)
    assert concluded is not None and concluded["outcome"] == "promoted"
    assert deploy.serving_versions(p, "local") == [V2]


def test_the_watchdogs_callback_is_the_bake_end_rule(p: Platform) -> None:
    deploy.deploy(p, V1, "local", "r1")
    deploy.deploy(p, V2, "local", "r2", canary_percent=10, bake_s=0.001)
    time.sleep(0.01)  # the bake is over
    callback = engines(p).on_bake_end
    assert callback is not None
    callback("local")
    assert deploy.serving_versions(p, "local") == [V2]


def test_a_canary_no_longer_approved_at_the_end_of_its_bake_is_aborted(p: Platform) -> None:
    deploy.deploy(p, V1, "local", "r1")
    deploy.deploy(p, V2, "local", "r2", canary_percent=10, bake_s=0.001)
    time.sleep(0.01)  # the bake is over
    p.registry.set_status(V2, "Rejected", "a person: wrong limits")
    concluded = deploy.conclude_canary(p, "local")
    assert concluded is not None and concluded["outcome"] == "canary aborted"
    assert deploy.serving_versions(p, "local") == [V1]


def test_rejecting_the_canary_version_aborts_it_and_approving_it_again_does_not_redeploy(p: Platform) -> None:
    deploy.deploy(p, V1, "local", "r1")
    deploy.deploy(p, V2, "local", "r2", canary_percent=10, bake_s=300)
    approved = ModelApproved(model_version=V2, family=FAMILY, decided_by="gate", champion=V2)
    assert deploy.handle_deploy_event(p, to_bus(approved).to_wire())["outcome"] == "already baking as a canary"
    rejected = ModelRejected(model_version=V2, family=FAMILY, decided_by="me", reasons=["leaks"], champion=V1)
    out = deploy.handle_deploy_event(p, to_bus(rejected).to_wire())
    assert out["outcome"] == "canary aborted" and deploy.serving_versions(p, "local") == [V1]
    assert events(p, "Canary Aborted")[0]["reason"] == f"{V2} was rejected: leaks"


def test_a_canary_needs_a_serving_version_and_the_local_target(p: Platform) -> None:
    with pytest.raises(deploy.NotDeployableError, match="without --canary first"):
        deploy.deploy(p, V2, "local", "r1", canary_percent=10)
    with pytest.raises(deploy.NotDeployableError, match="blue/green"):
        deploy.deploy(p, V2, "sagemaker", "r2", canary_percent=10)
    deploy.deploy(p, V1, "local", "r3")
    assert deploy.deploy(p, V1, "local", "r4", canary_percent=10)["outcome"] == "already serving all traffic"
    assert deploy.serving_versions(p, "local") == [V1] and deploy.serving_versions(p, "sagemaker") == []
