"""The whole monitoring loop on ``docllm up`` in seconds, without training: real engine processes,
``/v1/ask`` traffic, the template's serving alarms evaluated by the local platform, the rollback stage.

v1 serves; v2 is deployed with an injected fault; the alarm fires on v2's errors; the rollback stage
redeploys v1, verifies it, marks v2 RolledBack and records one incident. Both versions are the tiny
random-weight export (``tests/unit/serving/conftest.py``, a 512-token context so that a passage fits
the prompt) registered as Approved, so what is tested is the loop, not a model. A random-weight model
grounds no answer, so the ungrounded-rate alarm is set out of reach (``DOCLLM_PARAMETER_OVERRIDES``, as
``sam deploy --parameter-overrides`` would): the 5xx-rate alarm is the one under test. Seeded versions
have no training lineage, so the gate cannot issue the rejection manifest the rollback's registry change
asks of it (that path, with full lineage, is ``test_kill_points_rollback.py``'s).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from docllm.cli.main import main
from docllm.runtime.local import LocalRuntime
from docllm.service_layer import deploy
from tests.conftest import REPO
from tests.support.deployable import seed_deployable
from tests.unit.serving.conftest import build_export

pytestmark = pytest.mark.slow
V1, V2 = "tiny-s3-20260101-0001", "tiny-s3-20260102-0002"
PAGE = (
    "# Bucket versioning\n\n## Enable versioning\n\nTo enable versioning on a bucket, open the Amazon S3 console, "
    "choose the bucket, choose Properties, and under Bucket Versioning choose Enable. Versioning keeps every "
    "version of every object in the bucket.\n"
)
QUESTION = "How do I enable versioning on a bucket?"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    monkeypatch.setenv("DOCLLM_ENGINE_FAULTS", f"{V2}=errors")
    monkeypatch.setenv("DOCLLM_ASK_RATE", "1000")
    monkeypatch.setenv("DOCLLM_ASK_BURST", "1000")
    monkeypatch.setenv("DOCLLM_PARAMETER_OVERRIDES", "AskUngroundedRateAlarmPercent=100")
    rt = LocalRuntime(tmp_path / "data", template=REPO / "template.yaml", port=0, auth=False)
    rt.start()
    p = rt.platform
    assert p is not None
    seed_deployable(p, build_export(tmp_path / "export", block_size=512), V1, V2)
    p.objects.put(p.settings.raw_bucket, "s3/versioning.md", PAGE.encode(), metadata={"service": "s3"})
    assert rt.wait_idle(60)
    yield rt
    rt.stop()


def _events(rt: LocalRuntime, detail_type: str) -> list[dict[str, Any]]:
    assert rt.platform is not None
    return [e.body["detail"] for e in rt.platform.event_log.since(0) if e.detail_type == detail_type]


def _wait(rt: LocalRuntime, detail_type: str, match: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [d for d in _events(rt, detail_type) if match(d)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {detail_type} in {timeout:.0f} s; alarms: {_events(rt, 'CloudWatch Alarm State Change')}")


def test_an_alarm_on_the_faulty_version_rolls_it_back_to_the_good_one(
    runtime: LocalRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    p = runtime.platform
    assert p is not None
    assert deploy.deploy(p, V1, "local", "r1")["outcome"] == "deployed"
    answers: list[tuple[float, int, str | None, str | None]] = []
    stop = threading.Event()

    def ask() -> None:
        with httpx.Client(base_url=runtime.api_url, timeout=60) as http:
            while not stop.is_set():
                r = http.post("/v1/ask", json={"question": QUESTION})
                body = r.json() if r.status_code == 200 else {}
                answers.append((time.monotonic(), r.status_code, body.get("model_version"), body.get("reason")))
                time.sleep(0.05)

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    try:
        time.sleep(1)
        assert deploy.deploy(p, V2, "local", "r2")["outcome"] == "deployed"
        rolled = _wait(runtime, "Model Rolled Back", lambda d: d["model_version"] == V2, timeout=90)
        restored_at = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        asker.join(60)

    assert rolled["restored_version"] == V1 and rolled["verified"] is True
    assert [r for r in answers if r[1] != 200 and r[1] < 500] == []  # only the fault's 5xx
    assert any(status >= 500 for _, status, _, _ in answers), "the fault was never reached"
    assert all(reason != "no_relevant_documents" for *_, reason in answers)  # every question reached the model
    after = [(status, version) for t, status, version, _ in answers if t > restored_at + 0.5]
    assert after and set(after) == {(200, V1)}
    # One incident, one rollback, whatever number of alarms fired about v2.
    assert len(_events(runtime, "Model Rolled Back")) == 1 and len(_events(runtime, "Incident Opened")) == 1
    assert p.registry.get(V2).display_status == "RolledBack" and p.engines.verify(V1)

    # What an operator sees.
    models = {m["version"]: m["status"] for m in _cli(runtime, capsys, "models")}
    assert models[V2] == "RolledBack" and models[V1] == "Approved"
    (incident,) = _cli(runtime, capsys, "incidents")
    shown = _cli(runtime, capsys, "incident", "show", incident["incident_id"])
    assert (shown["bad_version"], shown["restored_version"]) == (V2, V1)
    assert shown["steps_done"] == ["redeploy", "verify", "registry", "notify", "announce"]
    assert shown["alarms"] and shown["alarms"][0]["name"].startswith("docllm-dev-serving-")
    assert _cli(runtime, capsys, "ask", QUESTION)["model_version"] == V1


def _cli(runtime: LocalRuntime, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    code = main(["--data-dir", str(runtime.data_dir), *args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)
