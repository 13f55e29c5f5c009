"""The local runtime delivers bucket events through queues to handlers, retries, and dead-letters."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest

from docllm.adapters.local.queue import QueueConfig
from docllm.cli.main import main
from docllm.runtime.local import LocalRuntime
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "runtime" / "template.yaml"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCLLM_TEST_RECORD", str(tmp_path / "received.jsonl"))
    monkeypatch.setattr(QueueConfig, "backoff_s", lambda self, n: 0.4 * 2 ** (n - 1))
    rt = LocalRuntime(tmp_path / "data", template=FIXTURE, port=0, auth=False)
    rt.start()
    yield rt
    rt.stop()


def received(tmp_path: Path) -> list[dict]:
    path = tmp_path / "received.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_an_upload_reaches_the_handler_as_an_eventbridge_object_created_through_the_queue(runtime, tmp_path):
    info = runtime.platform.objects.put("RawBucket", "good/a.md", b"# A")
    assert runtime.wait_idle(10)
    (event,) = received(tmp_path)
    assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
    assert event["detail"]["object"] == {
        "key": "good/a.md",
        "size": 3,
        "etag": info.etag,
        "version-id": info.version_id,
        "sequencer": event["detail"]["object"]["sequencer"],
    }


def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered_with_its_reason(runtime, tmp_path, capsys):
    runtime.platform.objects.put("RawBucket", "bad/x.md", b"# X")
    deadline = time.monotonic() + 20
    q = runtime.platform.local_queue
    while time.monotonic() < deadline and q.stats("BadQueue").dead == 0:
        time.sleep(0.05)
    (dead,) = q.dead_letters("BadQueue")
    assert dead.receive_count == 3
    assert "RuntimeError: refusing bad/x.md" in dead.reason
    assert main(["--data-dir", str(runtime.data_dir), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    bad = next(row for row in status["queues"] if row["queue"] == "BadQueue")
    assert bad["dead"] == 1 and "refusing bad/x.md" in bad["dead_letters"][0]["reason"]
    assert status["stage_health"]["FailFunction"] == "failing"


def test_retries_wait_longer_each_time(runtime):
    runtime.platform.objects.put("RawBucket", "bad/y.md", b"# Y")
    q = runtime.platform.local_queue
    seen: list[float] = []
    last = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = q._db.connection().execute("SELECT receive_count FROM messages WHERE queue='BadQueue'").fetchall()
        count = rows[0][0] if rows else 0
        if count != last:
            seen.append(time.monotonic())
            last = count
        if count == 3:
            break
        time.sleep(0.01)
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    # Backoff 0.4 s then 0.8 s; polling adds up to 0.25 s of noise to each gap.
    assert len(gaps) == 2 and gaps[1] - gaps[0] > 0.3


def test_events_that_match_no_rule_are_logged_but_not_delivered(runtime, tmp_path):
    runtime.platform.objects.put("RawBucket", "other/z.md", b"z")
    assert runtime.wait_idle(10)
    assert received(tmp_path) == []
    (logged,) = runtime.platform.event_log.last(1)
    assert logged.targets == [] and logged.detail_type == "Object Created"


def test_a_second_runtime_on_the_same_data_directory_is_refused(runtime):
    from docllm.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="already running"):
        LocalRuntime(runtime.data_dir, template=FIXTURE, port=0, auth=False).start()
