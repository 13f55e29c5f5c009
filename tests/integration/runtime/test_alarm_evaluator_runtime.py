"""``docllm up`` runs the alarm evaluator and the template's schedules in threads of its own."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docllm.cli.main import main
from docllm.exceptions import ConfigurationError
from docllm.runtime.local import LocalRuntime
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "monitoring" / "template.yaml"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    monkeypatch.setenv("DOCLLM_TEST_RECORD", str(tmp_path / "scheduled.jsonl"))
    monkeypatch.setenv("DOCLLM_ALARM_TICK_S", "0.05")
    monkeypatch.setenv("DOCLLM_SCHEDULE_SCALE", "0.005")  # rate(1 minute) every 0.3 s
    rt = LocalRuntime(tmp_path / "data", template=FIXTURE, port=0, auth=False)
    rt.start()
    yield rt
    rt.stop()


def wait_for(check, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_schedule_invokes_its_function_with_the_schedules_input(runtime: LocalRuntime, tmp_path: Path) -> None:
    record = tmp_path / "scheduled.jsonl"
    calls = wait_for(lambda: record.exists() and len(record.read_text().splitlines()) >= 2 and record.read_text())
    first = json.loads(calls.splitlines()[0])
    assert first == {
        "event": {"source": "docllm.schedule", "detail-type": "Tick", "detail": {}},
        "function": "TickFunction",
    }


def test_the_alarm_thread_evaluates_the_templates_alarms_and_docllm_alarms_shows_them(
    runtime: LocalRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    # No answers yet: missing data is not breaching, so each alarm leaves INSUFFICIENT_DATA for OK.
    wait_for(lambda: {s.name for s in runtime.alarm_evaluator.states()} >= {"docllm-dev-serving-5xx-rate"})
    capsys.readouterr()
    assert main(["--data-dir", str(runtime.data_dir), "alarms", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    states = {a["name"]: a["state"] for a in shown["alarms"]}
    assert states["docllm-dev-serving-5xx-rate"] == "OK"
    assert set(states) == {"docllm-dev-serving-5xx-rate", "docllm-dev-serving-p99-latency", "docllm-dev-drift-oov-rate"}
    assert [s["name"] for s in shown["skipped"]] == ["docllm-dev-rollback-queue-age"]
    assert main(["--data-dir", str(runtime.data_dir), "alarms"]) == 0
    assert "docllm-dev-serving-5xx-rate" in capsys.readouterr().out


def test_a_malformed_schedule_fails_the_start_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "template.yaml"
    bad.write_text(FIXTURE.read_text().replace("rate(1 minute)", "rate(1 fortnight)"))
    (tmp_path / "handlers.py").write_text((FIXTURE.parent / "handlers.py").read_text())
    rt = LocalRuntime(tmp_path / "data", template=bad, port=0, auth=False)
    with pytest.raises(ConfigurationError, match="rate\\(1 fortnight\\)"):
        rt.start()
