"""The rollback stage decides which version is bad and which is good, acts once, and records it all.

A local platform with faked engines (the endpoint record is what serves): versions are registered,
approved and deployed through the deploy stage's own code, then alarm events shaped as AWS documents
them drive :func:`handle_rollback_event`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform
from docllm.events.contracts import IncidentCloseRequested, to_bus
from docllm.exceptions import TransientError
from docllm.service_layer import deploy, rollback
from docllm.service_layer.gate import decisions
from docllm.service_layer.rollback import ROLLBACK_REVIEWER, handle_rollback_event, incidents, load_incident
from tests.support.rollback import (
    add_model,
    alarm_event,
    deploy_version,
    events_of,
    local_platform,
    now_stamp,
    use_fake_engines,
)

AGGREGATE = "docllm-dev-serving-5xx-rate"
LATENCY = "docllm-dev-serving-p99-latency"


@pytest.fixture
def p(tmp_path: Path) -> Platform:
    return local_platform(tmp_path / "data")


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollback, "_sleep", lambda s: None)


def serving(p: Platform) -> str | None:
    return (p.state.get(deploy.ENDPOINTS_PK, "local") or {}).get("model_version")


def rollback_deployments(p: Platform, incident_id: str) -> list[dict[str, Any]]:
    return [d for d in deploy.deployments(p) if d.get("request_id") == incident_id]


def two_versions(p: Platform) -> None:
    add_model(p, "v1")
    add_model(p, "v2")
    deploy_version(p, "v1")
    deploy_version(p, "v2")


def notifications(p: Platform) -> list[dict[str, Any]]:
    return p.notifier.read()  # type: ignore[attr-defined]


# -- the rollback ---------------------------------------------------------------------------------


def test_an_alarm_on_the_serving_version_rolls_back_to_the_previous_good_one(p):
    two_versions(p)
    result = handle_rollback_event(p, alarm_event(AGGREGATE))

    assert result["outcome"] == "rolled back" and result["bad_version"] == "v2"
    assert result["restored_version"] == "v1" and serving(p) == "v1"
    package = p.registry.get("v2")
    assert package.status == "Rejected" and package.display_status == "RolledBack"
    assert package.rolled_back_alarm == AGGREGATE and package.rollback_incident == result["incident"]
    assert p.registry.get("v1").status == "Approved"
    incident = load_incident(p, result["incident"])
    assert incident is not None and incident.steps_done == ["redeploy", "verify", "registry", "notify", "announce"]
    assert incident.verification is not None and incident.verification["observed"] == "v1"
    assert incident.severity == "warning" and incident.status == "open"
    assert [a.datapoints for a in incident.alarms] == [[42.0, 55.5]]
    assert set(incident.links) == {"v1", "v2"} and incident.links["v2"].export_uri.endswith("/v2/hf/")
    (rolled,) = events_of(p, "Model Rolled Back")
    assert rolled == {
        "schema_version": 1,
        "model_version": "v2",
        "restored_version": "v1",
        "family": "tiny-s3",
        "target": "local",
        "alarm_name": AGGREGATE,
        "incident_id": result["incident"],
        "action": "redeploy",
        "verified": True,
    }
    assert len(events_of(p, "Incident Opened")) == 1
    (note,) = notifications(p)
    assert note["severity"] == "warning" and "v2" in note["subject"] and len(note["subject"]) <= 100
    # The gate will find its decision when the registry's state change reaches it: a rollback decision.
    (decision,) = decisions(p, "v2")[-1:]
    assert decision.decided_by == ROLLBACK_REVIEWER and decision.status == "Rejected" and decision.override
    assert f"[docllm decision {decision.decision_id}]" in (package.approval_description or "")


def test_a_redelivered_alarm_changes_nothing(p):
    two_versions(p)
    event = alarm_event(AGGREGATE)
    first = handle_rollback_event(p, event)
    again = handle_rollback_event(p, event)

    assert again["outcome"] == "already rolled back" and again["incident"] == first["incident"]
    assert len(rollback_deployments(p, first["incident"])) == 1
    assert len(events_of(p, "Model Rolled Back")) == 1 and len(events_of(p, "Incident Opened")) == 1
    assert len(notifications(p)) == 1
    incident = load_incident(p, first["incident"])
    assert incident is not None and len(incident.alarms) == 1


def test_two_alarms_about_the_same_deployment_roll_back_once(p):
    two_versions(p)
    stamp = now_stamp()
    first = handle_rollback_event(p, alarm_event(AGGREGATE, stamp=stamp))
    # The local evaluator's per-version instance of another alarm, fired at the same moment.
    second = handle_rollback_event(p, alarm_event(f"{LATENCY}@v2", stamp=stamp))

    assert second["incident"] == first["incident"] and second["opened"] is False
    assert second["outcome"] == "already rolled back"
    assert len(rollback_deployments(p, first["incident"])) == 1 and serving(p) == "v1"
    assert len(events_of(p, "Model Rolled Back")) == 1
    incident = load_incident(p, first["incident"])
    assert incident is not None and [a.name for a in incident.alarms] == [AGGREGATE, f"{LATENCY}@v2"]


def test_an_alarm_whose_datapoints_predate_the_rollback_joins_its_incident(p):
    two_versions(p)
    started = now_stamp()
    first = handle_rollback_event(p, alarm_event(AGGREGATE, stamp=started))
    # The same kind of alarm evaluated just after the rollback, over a window that began before it:
    # it is about v2 still, not about v1.
    late = handle_rollback_event(p, alarm_event(LATENCY, stamp=now_stamp(0.5), start=started))

    assert late["incident"] == first["incident"] and late["bad_version"] == "v2"
    assert serving(p) == "v1" and p.registry.get("v1").status == "Approved"
    assert len(events_of(p, "Model Rolled Back")) == 1


def test_a_stale_alarm_about_a_replaced_version_is_recorded_and_does_nothing(p):
    two_versions(p)
    fired = now_stamp()
    add_model(p, "v3")
    deploy_version(p, "v3")  # the fix, deployed before the alarm's event arrived

    result = handle_rollback_event(p, alarm_event(AGGREGATE, stamp=fired))

    assert result["outcome"] == "stale: recorded, nothing done" and result["bad_version"] == "v2"
    assert serving(p) == "v3" and p.registry.get("v2").status == "Approved"
    incident = load_incident(p, result["incident"])
    assert incident is not None and incident.stale and incident.severity == "info" and incident.steps_done == []
    assert events_of(p, "Model Rolled Back") == [] and notifications(p) == []


def test_an_alarm_while_a_fix_is_baking_as_a_canary_does_not_block_it(p):
    two_versions(p)
    fired = now_stamp()
    add_model(p, "v3")
    deploy_version(p, "v3", canary_percent=10, bake_s=300)

    result = handle_rollback_event(p, alarm_event(f"{AGGREGATE}@v2", stamp=fired))

    assert result["outcome"] == "stale: recorded, nothing done"
    endpoint = p.state.get(deploy.ENDPOINTS_PK, "local") or {}
    assert endpoint["model_version"] == "v2" and endpoint["canary"]["model_version"] == "v3"


def test_with_no_previous_version_the_bad_one_keeps_serving_and_someone_is_paged(p):
    add_model(p, "v1")
    deploy_version(p, "v1")

    result = handle_rollback_event(p, alarm_event(AGGREGATE))

    assert result["outcome"] == "no good version: keeps serving, paged" and result["restored_version"] is None
    assert serving(p) == "v1" and p.registry.get("v1").status == "Approved"
    incident = load_incident(p, result["incident"])
    assert incident is not None and incident.severity == "page" and incident.steps_done == ["notify"]
    (note,) = notifications(p)
    assert note["severity"] == "page" and "PAGE" in note["subject"]
    assert events_of(p, "Model Rolled Back") == []
    # Redelivered: no second page.
    handle_rollback_event(p, alarm_event(AGGREGATE, stamp=incident.alarms[0].timestamp))
    assert len(notifications(p)) == 1


def test_never_rolls_back_to_a_rejected_or_rolled_back_version(p):
    for v in ("v1", "v2", "v3"):
        add_model(p, v)
    deploy_version(p, "v1")
    deploy_version(p, "v2")
    first = handle_rollback_event(p, alarm_event(AGGREGATE))  # v2 rolled back to v1
    assert first["restored_version"] == "v1" and p.registry.get("v2").rolled_back
    deploy_version(p, "v3")
    p.registry.set_status("v1", "Rejected", "alice: leaks a secret")
    add_model(p, "v0")
    deploy_version(p, "v0")
    deploy_version(p, "v3")  # history: v1, v2, v1 (rollback), v3, v0, v3

    result = handle_rollback_event(p, alarm_event(f"{LATENCY}@v3"))

    # v1 Rejected, v2 RolledBack: the newest acceptable version is v0.
    assert result["restored_version"] == "v0" and serving(p) == "v0"


def test_a_version_named_bad_by_an_earlier_incident_is_not_good_even_if_approved_again(p):
    two_versions(p)
    handle_rollback_event(p, alarm_event(AGGREGATE))
    p.registry.set_status("v2", "Approved", "bob: fixed by a config change")  # a person re-approves v2
    add_model(p, "v3")
    deploy_version(p, "v2")
    deploy_version(p, "v3")

    result = handle_rollback_event(p, alarm_event(f"{AGGREGATE}@v3"))

    assert result["restored_version"] == "v1"


def test_an_alarm_on_a_canary_drops_it_and_the_stable_version_keeps_all_traffic(p):
    two_versions(p)
    add_model(p, "v3")
    deploy_version(p, "v3", canary_percent=10, bake_s=300)

    result = handle_rollback_event(p, alarm_event(f"{AGGREGATE}@v3"))

    assert result["outcome"] == "rolled back" and result["bad_version"] == "v3"
    assert result["restored_version"] == "v2"
    endpoint = p.state.get(deploy.ENDPOINTS_PK, "local") or {}
    assert endpoint["model_version"] == "v2" and not endpoint.get("canary")
    assert p.registry.get("v3").display_status == "RolledBack"
    (rolled,) = events_of(p, "Model Rolled Back")
    assert rolled["action"] == "abort_canary" and rolled["verified"] is True
    assert len(events_of(p, "Canary Aborted")) == 1


def test_an_aggregate_alarm_during_a_canary_is_blamed_on_the_canary(p):
    two_versions(p)
    add_model(p, "v3")
    deploy_version(p, "v3", canary_percent=10, bake_s=300)

    result = handle_rollback_event(p, alarm_event(AGGREGATE))

    assert result["bad_version"] == "v3" and result["restored_version"] == "v2" and serving(p) == "v2"


# -- resumable ------------------------------------------------------------------------------------


def test_a_failure_between_two_steps_resumes_at_the_next_one(p, monkeypatch):
    two_versions(p)
    event = alarm_event(AGGREGATE)
    real = p.registry.mark_rolled_back
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("throttled")
        return real(*args, **kwargs)

    monkeypatch.setattr(p.registry, "mark_rolled_back", flaky)
    with pytest.raises(TransientError):
        handle_rollback_event(p, event)
    (incident,) = incidents(p)
    assert incident.steps_done == ["redeploy", "verify"] and incident.next_step == "registry"

    result = handle_rollback_event(p, event)

    assert result["steps"] == ["registry", "notify", "announce"] and result["outcome"] == "rolled back"
    assert len(rollback_deployments(p, incident.incident_id)) == 1 and len(events_of(p, "Model Rolled Back")) == 1


def test_a_verification_that_does_not_succeed_in_time_is_retried_not_skipped(p, monkeypatch):
    two_versions(p)
    monkeypatch.setattr(rollback, "LOCAL_VERIFY_S", 0.0)
    use_fake_engines(p).fail_verify = 1
    event = alarm_event(AGGREGATE)

    with pytest.raises(rollback.VerificationPendingError):
        handle_rollback_event(p, event)
    (incident,) = incidents(p)
    assert incident.steps_done == ["redeploy"] and incident.verification == {
        "ok": False,
        "at": incident.verification["at"],  # type: ignore[index]
    }
    assert p.registry.get("v2").status == "Approved"  # nothing marked before the rollback is seen

    result = handle_rollback_event(p, event)
    assert result["outcome"] == "rolled back" and len(rollback_deployments(p, incident.incident_id)) == 1


def test_a_deployment_made_while_the_rollback_waited_is_not_undone(p, monkeypatch):
    two_versions(p)
    event = alarm_event(AGGREGATE)
    monkeypatch.setattr(rollback.deployer, "deploy", _crash)
    with pytest.raises(TransientError):
        handle_rollback_event(p, event)
    monkeypatch.undo()
    monkeypatch.setattr(rollback, "_sleep", lambda s: None)
    add_model(p, "v3")
    deploy_version(p, "v3")  # someone ships a fix before the retry

    result = handle_rollback_event(p, event)

    assert result["outcome"] == "superseded: another deployment came first, the rollback stopped"
    assert serving(p) == "v3" and p.registry.get("v2").status == "Approved"
    incident = load_incident(p, result["incident"])
    assert incident is not None and incident.superseded and incident.severity == "page"


def _crash(*args: Any, **kwargs: Any) -> Any:
    raise TransientError("the engine did not start in time")


# -- other states, closing, other alarms -----------------------------------------------------------


def test_an_alarm_back_to_ok_is_noted_on_its_open_incident_and_nothing_else(p):
    two_versions(p)
    first = handle_rollback_event(p, alarm_event(AGGREGATE))
    deployments_before = len(deploy.deployments(p))

    result = handle_rollback_event(p, alarm_event(AGGREGATE, value="OK", stamp=now_stamp(1)))

    assert result["outcome"] == "noted" and result["incidents"] == [first["incident"]]
    incident = load_incident(p, first["incident"])
    assert incident is not None and incident.timeline[-1].kind == "alarm-recovered"
    assert incident.status == "open" and len(deploy.deployments(p)) == deployments_before


def test_closing_an_incident_records_its_cause_and_closer_once(p):
    two_versions(p)
    opened = handle_rollback_event(p, alarm_event(AGGREGATE))
    request = IncidentCloseRequested(
        incident_id=opened["incident"], cause="a tokenizer mismatch in v2's export", closed_by="local:alice"
    )
    wire = to_bus(request).to_wire()

    assert handle_rollback_event(p, wire)["outcome"] == "closed"
    assert handle_rollback_event(p, wire)["outcome"] == "already closed"

    incident = load_incident(p, opened["incident"])
    assert incident is not None and incident.status == "closed"
    assert (incident.cause, incident.closed_by) == ("a tokenizer mismatch in v2's export", "local:alice")
    (closed,) = events_of(p, "Incident Closed")
    assert closed["request_id"] == request.request_id


def test_closing_an_unknown_incident_is_a_permanent_error(p):
    wire = to_bus(IncidentCloseRequested(incident_id="nope", cause="c", closed_by="local:x")).to_wire()
    with pytest.raises(rollback.IncidentNotFoundError):
        handle_rollback_event(p, wire)


@pytest.mark.parametrize(
    "name",
    [
        "docllm-dev-drift-oov-rate",  # notifies only
        "docllm-prod-serving-5xx-rate",  # another stage's
        "ServerCpuTooHigh",
        "docllm-dev-rollback-errors",
    ],
)
def test_alarms_that_are_not_this_stages_serving_alarms_are_ignored(p, name):
    two_versions(p)
    result = handle_rollback_event(p, alarm_event(name))
    assert result["outcome"].startswith("ignored") and serving(p) == "v2" and incidents(p) == []


def test_an_alarm_on_a_target_nothing_was_deployed_to_is_ignored(p):
    two_versions(p)
    result = handle_rollback_event(p, alarm_event(AGGREGATE, target="sagemaker"))
    assert result["outcome"].startswith("ignored: nothing served") and serving(p) == "v2"


def test_an_alarm_naming_a_version_never_deployed_there_is_ignored(p):
    two_versions(p)
    result = handle_rollback_event(p, alarm_event(f"{AGGREGATE}@v9"))
    assert result["outcome"] == "ignored: v9 was never deployed on local"
