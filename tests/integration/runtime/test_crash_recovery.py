"""Killing `docllm up` mid-batch and restarting it loses nothing and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docllm.bootstrap import Platform
from docllm.records import DOCS_PK
from docllm.settings import Settings
from tests.conftest import REPO


def start_platform(data_dir: Path) -> subprocess.Popen[bytes]:
    (data_dir / "runtime.json").unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(data_dir), "up", "--port", "0", "--no-auth"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (data_dir / "runtime.json").exists():
        assert proc.poll() is None, "docllm up exited early"
        assert time.monotonic() < deadline, "docllm up did not start"
        time.sleep(0.1)
    return proc


def platform(data_dir: Path) -> Platform:
    env = {"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data_dir)}
    return Platform(Settings.from_env(env), template=REPO / "template.yaml")


def statuses(p: Platform) -> dict[str, str]:
    return {k: str(v["status"]) for k, v in p.state.query(DOCS_PK)}


@pytest.mark.slow
def test_kill_mid_batch_then_restart_processes_every_document_exactly_once(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    docs = {
        f"t/doc{i:03d}.md": f"# Page {i}\n\n## Part\n\nUnique text {i} " + " ".join(f"w{i}x{j}" for j in range(400))
        for i in range(80)
    }
    proc = start_platform(data)
    p = platform(data)
    for key, text in docs.items():
        p.objects.put(p.settings.raw_bucket, key, text.encode(), metadata={"service": "t"})
    deadline = time.monotonic() + 60
    while sum(s == "processed" for s in statuses(p).values()) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # no clean shutdown: batches are cut mid-way
    proc.wait()
    done_before = sum(s == "processed" for s in statuses(p).values())
    assert done_before < len(docs), "the kill came too late to test anything"

    proc = start_platform(data)
    try:
        deadline = time.monotonic() + 180
        while True:
            s = statuses(p)
            busy = any(p.local_queue.stats(q).visible or p.local_queue.stats(q).in_flight for q in p.local_queue.queues)
            if len(s) == len(docs) and all(v == "processed" for v in s.values()) and not busy:
                break
            assert time.monotonic() < deadline, f"not all processed after restart: {s}"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert not (data / "runtime.json").exists(), "SIGTERM must shut down cleanly"
    records = {k: v for k, v in p.state.query(DOCS_PK)}
    assert p.search.document_versions() == {k: v["version_id"] for k, v in records.items() if v["chunk_count"]}
    for key, rec in records.items():
        lines = p.objects.get(p.settings.processed_bucket, f"chunks/{key}.jsonl").decode().splitlines()
        ids = [json.loads(line)["chunk_id"] for line in lines]
        assert len(ids) == len(set(ids)) == rec["chunk_count"] > 0
    hits = p.search.search("Unique text 7", k=100)
    assert len({h.chunk_id for h in hits}) == len(hits)
    assert all(q.dead == 0 for q in (p.local_queue.stats(n) for n in p.local_queue.queues))
