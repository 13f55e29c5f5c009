"""A crash of the deploy stage between starting the new engine and committing the endpoint record
with its "Model Deployed" (and right after that commit) loses nothing and duplicates nothing.

"Deployment Requested" for an Approved version goes through the real Deploy handler on the local
platform (a real engine process over a tiny random-weight export); the runtime is "killed" at the
commit's side effect, before it and after it, and recovered as ``docllm up`` recovers (the engines of
the dead runtime drain by themselves: its supervisor is gone; ``docllm up`` serves the recorded
version again, then the message is redelivered). Each ends with exactly one deployment record, one
"Model Deployed", nothing left in the outbox or dead-lettered, and the engine serving the version.
The other side effects of the handler (publishing, the outbox entry's delete, the queue's delete)
come after the commit and are the outbox's and the queue's, covered by the other kill-point tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from docllm.adapters.local.engines import ENDPOINTS_PK, LOCAL_TARGET
from docllm.bootstrap import Platform, reset_platforms
from docllm.events.contracts import DeploymentRequested, to_bus
from docllm.faults import FaultInjector, parse_faults, read_trace
from docllm.runtime.local import LocalRuntime
from docllm.service_layer.deploy import deployments
from docllm.service_layer.outbox import pending
from tests.support.deployable import seed_deployable
from tests.support.kill_points import Killed, _kill, drain_queue, runtime
from tests.unit.serving.conftest import build_export

pytestmark = pytest.mark.slow
QUEUE = "DeployQueue"
V0, V1 = "tiny-s3-20260101-0001", "tiny-s3-20260102-0002"


def stop_engines(rt: LocalRuntime) -> None:
    """What the death of a runtime does to its engines: they notice their supervisor is gone and drain."""
    if rt.platform is not None and "engines" in vars(rt.platform):
        rt.platform.engines.stop_all(10)


def snapshot(p: Platform) -> dict[str, Any]:
    record = p.state.get(ENDPOINTS_PK, LOCAL_TARGET) or {}
    deployed = {e.body["id"]: e.body["detail"] for e in p.event_log.last(200) if e.detail_type == "Model Deployed"}
    return {
        "deployments": [(d["model_version"], d["previous_version"], d["status"]) for d in deployments(p)],
        "announced": sorted((d["model_version"], d["previous_version"]) for d in deployed.values()),
        "endpoint": (record.get("model_version"), record.get("previous_version"), record.get("canary")),
        "serving": p.engines.verify(V1),
        "outbox": len(pending(p)),
        "dead": [d.reason[:300] for d in p.local_queue.dead_letters(QUEUE)],
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], int]:
    """The data directory before delivery, what a clean delivery ends with, and the number of the
    commit's side effect (from the trace of that clean delivery)."""
    work = tmp_path_factory.mktemp("deploy-kill-points")
    base = work / "base"
    rt = runtime(base)
    p = rt.platform
    assert p is not None
    seed_deployable(p, build_export(work / "export"), V1)
    # V0 served before (its engine is gone with an earlier run): the deployment replaces it.
    p.state.put(ENDPOINTS_PK, LOCAL_TARGET, {"target": "local", "model_version": V0, "export_dir": str(work / "none")})
    p.bus.publish([to_bus(DeploymentRequested(model_version=V1, target="local", request_id="req-deploy"))])
    reset_platforms()
    reference = work / "reference"
    shutil.copytree(base, reference)
    trace = work / "trace.tsv"
    counter = FaultInjector(parse_faults("", trace=str(trace)))
    rt = runtime(reference, counter)
    try:
        drain_queue(rt, QUEUE)
        assert rt.platform is not None
        expected = snapshot(rt.platform)
    finally:
        stop_engines(rt)
        reset_platforms()
    assert expected == {
        "deployments": [(V1, V0, "InService")],
        "announced": [(V1, V0)],
        "endpoint": (V1, V0, None),
        "serving": True,
        "outbox": 0,
        "dead": [],
    }
    commit = next(e.seq for e in read_trace(trace) if e.op == "state.transact")
    return base, expected, commit


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_around_the_deployments_commit_then_recovery_deploys_once(scenario, tmp_path, when):
    base, expected, commit = scenario
    data_dir = tmp_path / when
    shutil.copytree(base, data_dir)
    rt = runtime(data_dir, FaultInjector(parse_faults(f"kill_{when}_side_effect={commit}"), kill=_kill))
    try:
        with pytest.raises(Killed):
            drain_queue(rt, QUEUE)
        assert rt.platform is not None and "engines" in vars(rt.platform)  # the engine had started
    finally:
        stop_engines(rt)
        reset_platforms()
    survivor = runtime(data_dir)  # as `docllm up` starts after a crash: recover, relay, serve again, redeliver
    try:
        assert survivor.platform is not None
        survivor.platform.engines.restore()
        drain_queue(survivor, QUEUE)
        assert snapshot(survivor.platform) == expected, f"killed {when} the commit (side effect {commit})"
    finally:
        stop_engines(survivor)
        reset_platforms()
