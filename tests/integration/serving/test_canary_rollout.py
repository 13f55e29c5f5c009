"""Canary rollouts on the local target, with real engine processes and requests running throughout.

One stable version, then a canary beside it (aborted: the stable one keeps all traffic), then a
canary that bakes and is promoted by the engines' watchdog — and no request fails through any of it.
The export is a tiny random-weight Llama (``tests/unit/serving/conftest.py``); both versions share
it. What the deploy stage records and announces for each rule is tested without engine processes in
``test_canary_records.py``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from docllm.adapters.local.inference import LocalEngineClient
from docllm.bootstrap import Platform
from docllm.ports.inference import GenerationParams
from docllm.service_layer import deploy
from docllm.settings import Settings
from tests.conftest import REPO
from tests.support.deployable import seed_deployable
from tests.unit.serving.conftest import build_export

pytestmark = pytest.mark.slow
V1, V2 = "tiny-s3-20260101-0001", "tiny-s3-20260102-0002"


@pytest.fixture
def p(tmp_path: Path) -> Iterator[Platform]:
    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path / "data")}),
        template=REPO / "template.yaml",
    )
    seed_deployable(platform, build_export(tmp_path / "export"), V1, V2)
    yield platform
    platform.engines.stop_all(10)


@dataclass
class Traffic:
    """Requests sent one after another through the local inference client, each noted with its version."""

    client: LocalEngineClient
    served: list[tuple[float, str]] = field(default_factory=list)  # (time sent, version that answered)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                self.served.append(
                    (sent, self.client.generate("Versioning keeps", GenerationParams(max_tokens=3)).model)
                )
            except Exception as e:
                self.failures.append(f"{type(e).__name__}: {e}")
            time.sleep(0.01)

    def since(self, t: float) -> set[str]:
        return {v for sent, v in self.served if sent >= t}

    def wait_for(self, versions: set[str], after: float, timeout: float = 60) -> None:
        wait(lambda: self.since(after) >= versions, timeout, f"requests answered by {versions}")


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def events(p: Platform, detail_type: str) -> list[dict[str, Any]]:
    return [e.body["detail"] for e in p.event_log.since(0) if e.detail_type == detail_type]


def test_requests_run_through_a_canary_start_abort_and_promotion_without_a_failure(p: Platform) -> None:
    assert deploy.deploy(p, V1, "local", "r1")["outcome"] == "deployed"
    assert deploy.serving_versions(p, "local") == [V1] and p.engines.verify(V1)
    traffic = Traffic(LocalEngineClient(p.state, rng=random.Random(11)))
    asker = threading.Thread(target=traffic.run, daemon=True)
    asker.start()
    try:
        # A canary beside the stable version: both answer, side by side.
        started = deploy.deploy(p, V2, "local", "r2", canary_percent=50, bake_s=3600)
        assert started["outcome"] == "canary started" and started["stable"] == V1
        assert deploy.serving_versions(p, "local") == [V1, V2]
        assert not p.engines.verify(V1) and not p.engines.verify(V2)  # neither takes all traffic
        t = time.monotonic()
        traffic.wait_for({V1, V2}, after=t)

        # Aborted: the stable version takes all traffic again, the canary's engine drains and exits.
        canary_proc = p.engines._procs[V2]
        assert deploy.abort_canary(p, "local", "p99 latency", model_version=V2)["outcome"] == "canary aborted"
        t = time.monotonic()
        assert deploy.serving_versions(p, "local") == [V1] and p.engines.verify(V1)
        assert canary_proc.wait(30) == 0
        traffic.wait_for({V1}, after=t)
        assert traffic.since(t) == {V1}
        assert deploy.abort_canary(p, "local", "again")["outcome"] == "no canary to abort"  # idempotent

        # A canary that bakes for a second: the watchdog promotes it (no alarm fires).
        deploy.deploy(p, V2, "local", "r3", canary_percent=50, bake_s=1)
        wait(lambda: any(d["model_version"] == V2 for d in events(p, "Model Deployed")), 30, "the promotion")
        t = time.monotonic()
        assert deploy.serving_versions(p, "local") == [V2] and p.engines.verify(V2)
        traffic.wait_for({V2}, after=t)
        time.sleep(0.3)
        assert traffic.since(t) == {V2}
    finally:
        traffic.stop.set()
        asker.join(30)
    assert traffic.failures == []
    assert len(traffic.served) > 50

    # Every change of the endpoint was announced, and recorded as a deployment with its outcome.
    assert [(d["model_version"], d["previous_version"]) for d in events(p, "Model Deployed")] == [(V1, None), (V2, V1)]
    assert [(d["model_version"], d["stable_version"]) for d in events(p, "Canary Started")] == [(V2, V1), (V2, V1)]
    assert [(d["model_version"], d["reason"]) for d in events(p, "Canary Aborted")] == [(V2, "p99 latency")]
    history = [(d["model_version"], d["strategy"], d["status"]) for d in deploy.deployments(p)]
    assert history == [(V1, "all-at-once", "InService"), (V2, "canary", "Aborted"), (V2, "canary", "InService")]
    assert set(p.engines._procs) == {V2, V1}  # the replaced engine stays, without traffic, as the warm standby


def test_the_replaced_version_stays_warm_so_going_back_to_it_starts_no_engine(p: Platform) -> None:
    deploy.deploy(p, V1, "local", "r1")
    first_pid = p.engines._procs[V1].pid
    deploy.deploy(p, V2, "local", "r2")
    assert set(p.engines._procs) == {V1, V2} and p.engines.verify(V2)  # V1: standby, no traffic
    deploy.deploy(p, V1, "local", "r3")  # what a rollback does
    assert p.engines._procs[V1].pid == first_pid and p.engines.verify(V1)
    p.engines.standby = False
    deploy.deploy(p, V2, "local", "r4")
    assert set(p.engines._procs) == {V2}  # without the standby, the replaced engine is retired
