"""Fault injection end to end: a real SIGKILL at a chosen side effect, enumerating kill points
from a trace, and the runtime's own side effects going through the injector."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from docllm.adapters.local.bus import EventLog
from docllm.bootstrap import Platform, reset_platforms
from docllm.faults import read_trace
from docllm.runtime.local import LocalRuntime
from docllm.settings import Settings
from tests.conftest import REPO

FAULT_VARS = ("DOCLLM_FAULTS", "DOCLLM_FAULTS_TRACE", "DOCLLM_JOB_FAULTS", "DOCLLM_JOB_FAULTS_TRACE")

#: Three side effects on three ports, through a platform built exactly as a handler's is.
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from docllm.bootstrap import Platform
    from docllm.events.envelope import BusEvent
    from docllm.settings import Settings

    p = Platform(Settings.from_env(), template=Path(sys.argv[1]))
    p.state.put("test", "first", {"n": 1})
    p.objects.put(p.settings.processed_bucket, "second.txt", b"2")
    p.bus.publish([BusEvent(detail_type="Fault Test", source="docllm.test", detail={"n": 3})])
    print("survived", flush=True)
    """
)


def run_script(data: Path, **fault_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in FAULT_VARS}
    env.update({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data), **fault_env})
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPO / "template.yaml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def done(data: Path) -> list[str]:
    """Which of the script's three side effects are visible in the data directory."""
    p = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data)}), template=REPO / "template.yaml"
    )
    seen = []
    if p.state.get("test", "first") is not None:
        seen.append("state.put")
    if any(o.key == "second.txt" for o in p.objects.list(p.settings.processed_bucket)):
        seen.append("objects.put")
    if any(e.detail_type == "Fault Test" for e in EventLog(data / "events.db").since(0)):
        seen.append("bus.publish")
    return seen


def test_kill_after_side_effect_2_sigkills_the_process_right_after_its_second_side_effect(tmp_path):
    data, trace = tmp_path / "data", tmp_path / "trace.tsv"
    result = run_script(data, DOCLLM_FAULTS="kill_after_side_effect=2", DOCLLM_FAULTS_TRACE=str(trace))
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert "survived" not in result.stdout
    assert [(e.seq, e.op, e.outcome) for e in read_trace(trace)] == [
        (1, "state.put", "ok"),
        (2, "objects.put", "kill-after"),
    ]
    assert done(data) == ["state.put", "objects.put"]


def test_a_crash_test_enumerates_every_kill_point_from_a_fault_free_trace(tmp_path):
    """The recipe of docs/faults.md: trace a clean run, then kill after side effect 1..N in turn."""
    clean_trace = tmp_path / "clean.tsv"
    clean = run_script(tmp_path / "clean", DOCLLM_FAULTS_TRACE=str(clean_trace))
    assert clean.returncode == 0 and "survived" in clean.stdout, clean.stderr
    ops = [e.op for e in read_trace(clean_trace)]
    assert ops == ["state.put", "objects.put", "bus.publish"]
    for n in range(1, len(ops) + 1):
        data = tmp_path / f"kill-{n}"
        result = run_script(data, DOCLLM_FAULTS=f"kill_after_side_effect={n}")
        assert result.returncode == -signal.SIGKILL, (n, result.stderr)
        assert done(data) == ops[:n], n  # exactly the side effects before the kill point, nothing after


def test_an_injected_error_is_transient_and_the_caller_sees_it(tmp_path):
    result = run_script(tmp_path / "data", DOCLLM_FAULTS="objects.put:nth=1,after")
    assert result.returncode == 1 and "docllm.faults.InjectedFault" in result.stderr
    assert "its response was lost" in result.stderr
    assert done(tmp_path / "data") == ["state.put", "objects.put"]  # the write happened all the same


@pytest.fixture
def traced_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in FAULT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCLLM_TEST_RECORD", str(tmp_path / "received.jsonl"))
    monkeypatch.setenv("DOCLLM_FAULTS_TRACE", str(tmp_path / "trace.tsv"))
    rt = LocalRuntime(
        tmp_path / "data", template=REPO / "tests" / "fixtures" / "runtime" / "template.yaml", port=0, auth=False
    )
    rt.start()
    yield rt
    rt.stop()
    reset_platforms()


def test_the_runtimes_queue_delete_is_a_side_effect_and_the_s3_notification_is_not(traced_runtime, tmp_path):
    traced_runtime.platform.objects.put("RawBucket", "good/a.md", b"# A")
    assert traced_runtime.wait_idle(10)
    (event,) = [json.loads(line) for line in (tmp_path / "received.jsonl").read_text().splitlines()]
    assert event["detail"]["object"]["key"] == "good/a.md"
    entries = read_trace(tmp_path / "trace.tsv")
    assert [(e.seq, e.op, e.outcome) for e in entries] == [(1, "objects.put", "ok"), (2, "queue.delete", "ok")]
    assert entries[0].detail == "RawBucket good/a.md" and entries[1].detail.startswith("GoodQueue ")
    assert type(traced_runtime.platform.local_queue).__name__ == "FaultProxy"
