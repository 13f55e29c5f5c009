"""A crash between any two side effects of the gate loses nothing and forges nothing.

"Evaluation Completed" for a seeded model goes through the real Gate handler (register, decision
record, registry status, the registry's state change back to the gate, champion alias, write-once
manifest, outbox commit), killed after and before every side effect, then recovered as `docllm up`
recovers: the model ends Approved and champion, with exactly one decision, one manifest in the
chain, "Model Approved" published, nothing left in the outbox and nothing dead-lettered.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform, reset_platforms
from docllm.events.contracts import to_bus
from docllm.faults import FaultInjector, parse_faults
from docllm.runtime.local import LocalRuntime
from docllm.service_layer.gate import decisions
from docllm.service_layer.outbox import pending
from tests.integration.manifest.conftest import FAMILY, evaluation_completed, seed_inputs, seed_model
from tests.support.kill_points import drain_queue, kill_at_every_point, runtime

QUEUE = "GateQueue"


def drain(rt: LocalRuntime) -> None:
    drain_queue(rt, QUEUE)


def snapshot(p: Platform) -> dict[str, Any]:
    (version,) = [m for m in _versions(p)]
    approved = {e.body["detail"]["model_version"] for e in p.event_log.last(200) if e.detail_type == "Model Approved"}
    return {
        "status": p.registry.get(version).status,
        "aliases": p.registry.aliases(FAMILY),
        "decisions": [(d.decision_id, d.status, d.applied) for d in decisions(p, version)],
        "manifests": [k for k in p.compliance.list("manifests/")],
        "chain": [sk for sk, _ in p.state.query(f"manifests#{FAMILY}")],
        "announced": sorted(approved),
        "outbox": len(pending(p)),
        "dead": [d.reason[:300] for d in p.local_queue.dead_letters(QUEUE)],
    }


def _versions(p: Platform) -> list[str]:
    return [sk for sk, _ in p.state.query("models")]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], int]:
    base = tmp_path_factory.mktemp("gate-kill-points") / "base"
    rt = runtime(base)
    p = rt.platform
    assert p is not None
    seeded = seed_inputs(p)
    version = seed_model(seeded, 1)
    completed = evaluation_completed(p, version, "req-gate")
    p.bus.publish([to_bus(completed)])
    reset_platforms()
    reference = base.parent / "reference"
    shutil.copytree(base, reference)
    counter = FaultInjector(parse_faults("", trace=str(base.parent / "trace.tsv")))
    rt = runtime(reference, counter)
    drain(rt)
    assert rt.platform is not None
    expected = snapshot(rt.platform)
    reset_platforms()
    assert expected["status"] == "Approved" and expected["aliases"] == {"champion": version}
    assert expected["decisions"] == [(completed.evaluation_id, "Approved", True)]
    assert len(expected["manifests"]) == 1 and expected["chain"] == ["00000001"]
    assert expected["announced"] == [version] and expected["outbox"] == 0 and expected["dead"] == []
    return base, expected, counter.side_effects


@pytest.mark.slow
@pytest.mark.parametrize("when", ["after", "before"])
def test_a_kill_at_any_side_effect_of_the_gate_then_recovery_decides_once(scenario, tmp_path, when):
    base, expected, total = scenario
    assert total >= 6
    kill_at_every_point(base, tmp_path, total, when, drain, snapshot, expected)
