"""The servers under test as child processes: our engine server and vLLM's CPU build.

Each runs in its own process (no GIL shared with the load client) and is stopped with SIGTERM to
its process group. vLLM comes from its tool environment (``scripts/vllm-setup.sh``); where that is
absent the benchmark leaves vLLM's rows out and says so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VLLM = REPO / ".tools" / "vllm" / "bin" / "vllm"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextmanager
def ours(
    export: Path, model: str, *, threads: int, log: Path, dtype: str = "float32", in_process: bool = False
) -> Iterator[str]:
    """``python -m docllm.serving.server`` on a free port; yields its URL once it prints READY."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "docllm.serving.server", "--export", str(export), "--model-name", model,
             "--port", "0", "--threads", str(threads), "--max-batch", "8", "--dtype", dtype,
             *(["--in-process"] if in_process else [])],
            stdout=subprocess.PIPE, stderr=err, cwd=REPO, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"our server did not start ({line!r}); see {log}")
        yield line.split()[1]
    finally:
        _stop(proc)


def vllm_available() -> bool:
    return VLLM.exists()


@contextmanager
def vllm(
    export: Path,
    model: str,
    *,
    dtype: str,
    log: Path,
    timeout_s: float = 900,
    max_model_len: int = 512,
    args: Sequence[str] = (),
) -> Iterator[str]:
    """``vllm serve`` (CPU build) on a free port; yields its URL once ``/v1/models`` answers.

    ``args``: more ``vllm serve`` options (``--seed 0``, ``--enable-lora --lora-modules NAME=DIR``).
    A server that exits or does not answer within ``timeout_s`` is a RuntimeError or a TimeoutError
    naming ``log``, where its output is.
    """
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VLLM), "serve", str(export), "--served-model-name", model, "--host", "127.0.0.1",
             "--port", str(port), "--max-model-len", str(max_model_len), "--dtype", dtype, *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {proc.returncode} while starting; see {log}")
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=5) as resp:
                    if json.loads(resp.read())["data"]:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"vLLM did not serve /v1/models within {timeout_s:.0f} s; see {log}")
            time.sleep(2)
        yield url
    finally:
        _stop(proc)
