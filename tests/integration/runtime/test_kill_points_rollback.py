"""A crash between any two side effects of a rollback loses nothing and does nothing twice.

Two seeded models go through the real gate (approved, champion) and the real deployer (v1, then v2 on
the local target; engines faked, the endpoint record is what serves). Then "CloudWatch Alarm State
Change" of a serving alarm reaches RollbackQueue, and the rollback handler, the gate (which applies
the rollback's decision when the registry announces v2 Rejected) and the deployer (which finds v1
serving already when "Model Rejected" comes) run — killed after and before each side effect, then
recovered as ``docllm up`` recovers. Every run ends like the uninterrupted one: v1 serves, v2 is
RolledBack, exactly one rollback deployment, exactly one "Model Rolled Back", nothing left in the
outbox and nothing dead-lettered.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform, reset_platforms
from docllm.events.contracts import to_bus
from docllm.events.envelope import BusEvent
from docllm.faults import FaultInjector, parse_faults, read_trace
from docllm.runtime.local import LocalRuntime
from docllm.service_layer import deploy, rollback
from docllm.service_layer.gate import decisions
from docllm.service_layer.outbox import pending
from tests.integration.manifest.conftest import FAMILY, evaluation_completed, seed_inputs, seed_model
from tests.support.kill_points import drain_queue, kill_at_every_point, kill_once, runtime
from tests.support.rollback import alarm_event, use_fake_engines

QUEUES = ("RollbackQueue", "GateQueue", "DeployQueue")


def drain(rt: LocalRuntime) -> None:
    """Every queue of the chain, until all are empty (the gate's "Model Rejected" feeds the deployer)."""
    assert rt.platform is not None
    use_fake_engines(rt.platform)
    queue = rt.platform.local_queue
    for _ in range(10):
        for name in QUEUES:
            drain_queue(rt, name)
        if not any(queue.stats(name).visible for name in QUEUES):
            return


def snapshot(p: Platform) -> dict[str, Any]:
    (incident,) = rollback.incidents(p)
    versions = sorted(sk for sk, _ in p.state.query("models"))
    log = p.event_log.last(2000)

    def distinct(detail_type: str) -> int:
        return len({e.body["id"] for e in log if e.detail_type == detail_type})

    return {
        "serving": (p.state.get(deploy.ENDPOINTS_PK, "local") or {}).get("model_version"),
        "statuses": {v: p.registry.get(v).display_status for v in versions},
        "aliases": p.registry.aliases(FAMILY),
        "rollbacks": len([d for d in deploy.deployments(p) if d.get("request_id") == incident.incident_id]),
        "deployments": len(deploy.deployments(p)),
        "incident": (incident.bad_version, incident.restored_version, incident.status, incident.severity),
        "steps": incident.steps_done,
        "timeline": [e.kind for e in incident.timeline],
        "rolled_back": distinct("Model Rolled Back"),
        "opened": distinct("Incident Opened"),
        "rejected": distinct("Model Rejected"),
        "decisions": [(d.decided_by, d.status, d.applied) for d in decisions(p, incident.bad_version)],
        "notified": len(p.notifier.read()) >= 1,  # type: ignore[attr-defined]  # at least once
        "outbox": len(pending(p)),
        "dead": [d.reason[:300] for q in QUEUES for d in p.local_queue.dead_letters(q)],
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], int, list[str]]:
    base = tmp_path_factory.mktemp("rollback-kill-points") / "base"
    rt = runtime(base)
    p = rt.platform
    assert p is not None
    if "RollbackQueue" not in {q.name for q in rt.wiring.queues.values()}:
        pytest.skip("template.yaml does not route serving alarms to RollbackQueue yet")
    use_fake_engines(p)
    seeded = seed_inputs(p)
    first, second = seed_model(seeded, 1), seed_model(seeded, 2)
    for version in (first, second):  # approved one after the other: v1 deployed, then v2 in its place
        p.bus.publish([to_bus(evaluation_completed(p, version, f"req-{version}"))])
        drain(rt)
    assert (p.state.get(deploy.ENDPOINTS_PK, "local") or {})["model_version"] == second
    p.default_bus.publish([BusEvent.model_validate(alarm_event(f"docllm-{p.settings.stage}-serving-5xx-rate"))])
    reset_platforms()

    reference = base.parent / "reference"
    shutil.copytree(base, reference)
    trace = base.parent / "trace.tsv"
    counter = FaultInjector(parse_faults("", trace=str(trace)))
    rt = runtime(reference, counter)
    drain(rt)
    assert rt.platform is not None
    expected = snapshot(rt.platform)
    reset_platforms()
    assert expected["serving"] == first and expected["statuses"] == {first: "Approved", second: "RolledBack"}
    assert expected["aliases"] == {"champion": first}
    assert expected["rollbacks"] == 1 and expected["rolled_back"] == 1 and expected["opened"] == 1
    assert expected["steps"] == ["redeploy", "verify", "registry", "notify", "announce"]
    assert expected["decisions"][-1] == (rollback.ROLLBACK_REVIEWER, "Rejected", True)
    assert expected["outbox"] == 0 and expected["dead"] == []
    ops = [f"{e.op} {e.detail}" for e in read_trace(trace)]
    return base, expected, counter.side_effects, ops


def _index(ops: list[str], needle: str) -> int:
    """The 1-based number of the first side effect whose trace line holds ``needle``."""
    return next(i for i, op in enumerate(ops, 1) if needle in op)


@pytest.mark.parametrize(
    ("when", "needle"),
    [
        # Between the redeploy and the registry update: the deployment committed, its step not recorded...
        ("after", "Model Deployed"),
        # ... and every step recorded up to the registry (the gate's decision record written, not applied).
        ("after", "#step#verify"),
        ("after", "decisions"),
    ],
    ids=["redeploy-committed", "verified", "decision-recorded"],
)
def test_a_crash_between_the_redeploy_and_the_registry_update_rolls_back_once(scenario, tmp_path, when, needle):
    base, expected, _, ops = scenario
    n = _index(ops, needle)
    assert n < _index(ops, "registry.mark_rolled_back")
    kill_once(base, tmp_path, n, when, drain, snapshot, expected)


@pytest.mark.parametrize(
    ("when", "needle"),
    [
        ("after", "registry.mark_rolled_back"),  # marked, the step not recorded
        ("before", "#step#announce"),  # notified, the event not committed
        ("after", "#step#announce"),  # committed with its event, not yet published
    ],
    ids=["marked", "notified", "announce-committed"],
)
def test_a_crash_between_the_registry_update_and_the_event_announces_once(scenario, tmp_path, when, needle):
    base, expected, _, ops = scenario
    n = _index(ops, needle)
    assert _index(ops, "registry.mark_rolled_back") <= n <= _index(ops, "#step#announce")
    kill_once(base, tmp_path, n, when, drain, snapshot, expected)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["after", "before"])
def test_a_kill_at_any_side_effect_of_a_rollback_then_recovery_rolls_back_once(scenario, tmp_path, when):
    base, expected, total, _ = scenario
    assert total >= 10
    kill_at_every_point(base, tmp_path, total, when, drain, snapshot, expected)
