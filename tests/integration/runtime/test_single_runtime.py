"""One runtime per data directory, really (issue 13): a lock held for the runtime's life and
released by the OS when it dies. Two ``docllm up`` started together: one runs, the other says
who holds the directory and exits; stopping one never removes the other's ``runtime.json``; a
SIGKILLed runtime leaves nothing that blocks the next start; ``docllm up --port 0`` announces
the port it really serves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docllm.exceptions import ConfigurationError, PlatformNotRunningError
from docllm.runtime.local import RUNTIME_FILE, LocalRuntime, read_runtime_file
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "runtime" / "template.yaml"


def up(data: Path, template: Path = FIXTURE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(data), "up", "--port", "0", "--no-auth"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "DOCLLM_TEMPLATE": str(template), "COLUMNS": "200"},
    )


def wait_running(data: Path, proc: subprocess.Popen[str], timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            info = read_runtime_file(data)
            if info["pid"] == proc.pid:
                return info
        except (PlatformNotRunningError, ValueError):
            pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "docllm up did not start"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


@pytest.mark.slow
def test_two_ups_started_together_one_runs_the_other_names_it_and_exits(tmp_path: Path):
    data = tmp_path / "data"  # fresh: neither finds a runtime.json to refuse on
    # The real template: it has the API, whose port `--port 0` leaves to the OS.
    first, second = up(data, REPO / "template.yaml"), up(data, REPO / "template.yaml")
    try:
        deadline = time.monotonic() + 60
        while first.poll() is None and second.poll() is None:
            assert time.monotonic() < deadline, "neither docllm up was refused"
            time.sleep(0.05)
        loser, winner = (first, second) if first.poll() is not None else (second, first)
        info = wait_running(data, winner)
        out = loser.communicate(timeout=30)[0]
        assert loser.returncode != 0, out
        assert "Traceback" not in out, out
        assert "already running" in out and f"pid {winner.pid}" in out, out
        # --port 0: the announcement names the port actually served, the one runtime.json names.
        port = int(info["api_url"].rsplit(":", 1)[1])
        assert port != 0
        time.sleep(0.5)  # the winner's announcement thread prints once runtime.json is there
        assert winner.poll() is None
        os.killpg(winner.pid, signal.SIGTERM)
        winner_out = winner.communicate(timeout=60)[0]
        assert f"API on http://127.0.0.1:{port} " in winner_out, winner_out
        assert "http://127.0.0.1:0" not in winner_out
    finally:
        for p in (first, second):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.mark.slow
def test_a_sigkilled_runtime_leaves_the_lock_free_and_is_reported_as_stopped(tmp_path: Path):
    data = tmp_path / "data"
    proc = up(data)
    try:
        wait_running(data, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert (data / RUNTIME_FILE).exists()  # left behind: nothing cleaned up
        with pytest.raises(PlatformNotRunningError, match="stopped without cleaning up"):
            read_runtime_file(data)
        again = up(data)
        try:
            info = wait_running(data, again)
            assert info["pid"] == again.pid
        finally:
            stop(again)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_lock_not_the_pid_says_whether_it_runs(tmp_path: Path):
    data = tmp_path / "data"
    rt = LocalRuntime(data, template=FIXTURE, port=0, auth=False)
    rt.start()
    try:
        assert read_runtime_file(data)["pid"] == os.getpid()
        with pytest.raises(ConfigurationError, match=rf"already running .*pid {os.getpid()}.*{rt.api_url}"):
            LocalRuntime(data, template=FIXTURE, port=0, auth=False).start()
        assert read_runtime_file(data)["api_url"] == rt.api_url  # the refused one removed nothing
    finally:
        rt.stop()
    assert not (data / RUNTIME_FILE).exists()
    # A runtime.json naming a live pid (this one) but no lock held: not running.
    (data / RUNTIME_FILE).write_text(json.dumps({"pid": os.getpid(), "api_url": "http://127.0.0.1:1"}))
    with pytest.raises(PlatformNotRunningError):
        read_runtime_file(data)
    # …and the next start takes over.
    rt = LocalRuntime(data, template=FIXTURE, port=0, auth=False)
    rt.start()
    try:
        assert read_runtime_file(data)["api_url"] == rt.api_url
    finally:
        rt.stop()


def test_stopping_a_runtime_never_removes_a_runtime_file_it_did_not_write(tmp_path: Path):
    data = tmp_path / "data"
    rt = LocalRuntime(data, template=FIXTURE, port=0, auth=False)
    rt.start()
    other = {"pid": 1, "api_url": "http://127.0.0.1:9"}
    (data / RUNTIME_FILE).write_text(json.dumps(other))  # as if another runtime had rewritten it
    rt.stop()
    assert json.loads((data / RUNTIME_FILE).read_text()) == other


def test_the_refusal_names_the_data_directory(tmp_path: Path):
    data = tmp_path / "data"
    rt = LocalRuntime(data, template=FIXTURE, port=0, auth=False)
    rt.start()
    try:
        with pytest.raises(ConfigurationError) as info:
            LocalRuntime(data, template=FIXTURE, port=0, auth=False).start()
        assert re.search(re.escape(str(data.resolve())), str(info.value))
    finally:
        rt.stop()
