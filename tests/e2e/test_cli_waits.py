"""Waiting verbs report their own request's outcome: two ``docllm dataset build`` run at once, one
of which fails for good; each answers with its own result, the failing one within seconds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from docllm.runtime.local import LocalRuntime
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path_factory.mktemp("platform"), template=REPO / "template.yaml", port=0, auth=False)
    rt.start()
    p = rt.platform
    assert p is not None
    body = "# Buckets\n\n## Create\n\n" + " ".join(f"bucketword{i}" for i in range(200)) + "\n"
    p.objects.put(p.settings.raw_bucket, "s3/buckets.md", body.encode(), metadata={"service": "s3"})
    assert rt.wait_idle(60)
    yield rt
    rt.stop()


def build(rt: LocalRuntime, services: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(rt.data_dir), "dataset", "build"]
    return subprocess.Popen(
        [*cmd, "--services", services, "--timeout", "120", "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_builds_at_once_each_report_their_own_outcome_and_a_failure_comes_fast(runtime) -> None:
    started = time.monotonic()
    failing, fine = build(runtime, "nosuchservice"), build(runtime, "s3")
    out_fail, err_fail = failing.communicate(timeout=150)
    failed_after = time.monotonic() - started
    out_ok, _ = fine.communicate(timeout=150)
    assert fine.returncode == 0
    built = json.loads(out_ok)
    assert built["documents"] == 1 and built["dataset_version"]
    assert failing.returncode != 0
    failure = json.loads(out_fail) if out_fail.strip() else {}
    text = json.dumps(failure) + err_fail
    assert "EmptyDataset" in text or "no processed document" in text.lower(), text
    assert "dataset_version" not in failure  # never the other request's dataset
    assert failed_after < 10 + 5  # within 10 s of the failure (+ the CLI's own start-up)


def test_a_request_for_an_unknown_family_fails_at_once_with_the_known_names(runtime) -> None:
    from docllm.events.contracts import DatasetBuildRequested, to_bus

    p = runtime.platform
    request = DatasetBuildRequested(family="no-such-family")
    start = p.event_log.last(1)[0].seq
    p.bus.publish([to_bus(request)])
    deadline = time.monotonic() + 10
    failed: list[dict] = []
    while not failed and time.monotonic() < deadline:
        failed = [
            e.body["detail"]
            for e in p.event_log.since(start)
            if e.detail_type == "Stage Failed" and e.body["detail"].get("request_id") == request.request_id
        ]
        time.sleep(0.1)
    assert failed, "no Stage Failed within 10 s"
    assert "unknown model family 'no-such-family'" in failed[0]["reason"] and "smoke" in failed[0]["reason"]
    assert failed[0]["stage"] == "dataset"
