"""The `local` deployment target: engine server processes supervised by ``docllm up``.

What SageMaker does for an endpoint, done for one machine: the export is copied out of the
artifact bucket, ``python -m docllm.serving.server`` is started on a free loopback port and
waited for until it answers ``/health``, and only then is it recorded as the endpoint (state
``endpoints/local``), so the next request goes to it. The engine it replaces is sent SIGTERM,
which makes it stop accepting, finish every request in flight, and exit: a swap fails no request
(the inference client retries a refused connection once against the newly recorded engine).

A watchdog restarts the recorded engine if it dies; ``docllm up`` restarts it after a restart of
the platform (:meth:`LocalEngines.restore`) and stops it when the platform stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from docllm.adapters.local.files import private_dir
from docllm.exceptions import TransientError
from docllm.ports.objects import ObjectStore, split_uri
from docllm.ports.state import StateStore
from docllm.records import utcnow

ENDPOINTS_PK = "endpoints"
LOCAL_TARGET = "local"
#: Time for an engine to load its export and answer /health.
START_TIMEOUT_S = 180.0
#: Time a replaced engine has to finish the requests it holds.
DRAIN_TIMEOUT_S = 120.0


class EngineStartError(TransientError):
    """The engine process exited or did not become healthy in time (its log says why)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalEngines:
    """Starts, swaps, watches and stops the local engine processes of one data directory."""

    def __init__(
        self,
        root: Path,
        *,
        state: StateStore,
        objects: ObjectStore,
        python: str = sys.executable,
        threads: int | None = None,
    ) -> None:
        self.root = Path(root)
        self._state = state
        self._objects = objects
        self._python = python
        self._threads = threads
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # model version -> process
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    # -- the target ---------------------------------------------------------------------------------
    def current(self) -> dict[str, Any] | None:
        return self._state.get(ENDPOINTS_PK, LOCAL_TARGET)

    def deploy(self, model_version: str, export_uri: str, *, family: str) -> dict[str, Any]:
        """Serve ``model_version``; return the endpoint record (with the version it replaced)."""
        with self._lock:
            current = self.current()
            if current and current.get("model_version") == model_version and self._alive(model_version):
                return current
            export = self._fetch(model_version, export_uri)
            url, proc = self._start(model_version, export)
            record = {
                "target": LOCAL_TARGET,
                "model_version": model_version,
                "family": family,
                "url": url,
                "pid": proc.pid,
                "export_dir": str(export),
                "previous_version": (current or {}).get("model_version"),
                "deployed_at": utcnow(),
            }
            # The switch: from here on, requests go to the new engine.
            self._state.put(ENDPOINTS_PK, LOCAL_TARGET, record)
            old = (current or {}).get("model_version")
            if old and old != model_version:
                self._retire(old)
            self._ensure_watchdog()
            return record

    def restore(self) -> dict[str, Any] | None:
        """After ``docllm up`` starts: serve the recorded version again (on a new port)."""
        current = self.current()
        if not current:
            return None
        with self._lock:
            export = Path(current["export_dir"])
            if not (export / "config.json").exists():
                return None
            url, proc = self._start(current["model_version"], export)
            current.update(url=url, pid=proc.pid, restored_at=utcnow())
            self._state.put(ENDPOINTS_PK, LOCAL_TARGET, current)
            self._ensure_watchdog()
            return current

    def stop_all(self, timeout_s: float = 30) -> None:
        self._stopping.set()
        with self._lock:
            procs = list(self._procs.items())
            self._procs.clear()
        for _, proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for _, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()

    # -- internals ----------------------------------------------------------------------------------
    def _fetch(self, model_version: str, export_uri: str) -> Path:
        """The export, copied once into the data directory (what SageMaker's model download does)."""
        target = self.root / model_version / "model"
        if (target / "config.json").exists():
            return target
        partial = private_dir(self.root / model_version / "model.partial")
        bucket, prefix = split_uri(export_uri if export_uri.endswith("/") else export_uri + "/")
        for info in self._objects.list(bucket, prefix):
            self._objects.download_file(bucket, info.key, partial / info.key[len(prefix) :])
        os.replace(partial, target)
        return target

    def _start(self, model_version: str, export: Path) -> tuple[str, subprocess.Popen[bytes]]:
        port = _free_port()
        log = private_dir(self.root / model_version) / "engine.log"
        cmd = [
            self._python,
            "-m",
            "docllm.serving.server",
            "--export",
            str(export),
            "--model-name",
            model_version,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        if self._threads:
            cmd += ["--threads", str(self._threads)]
        with open(log, "ab") as out:
            # The engine watches this process and drains itself when it goes (even by SIGKILL): no engine
            # outlives the platform that supervised it.
            env = {**os.environ, "DOCLLM_ENGINE_PARENT_PID": str(os.getpid())}
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EngineStartError(f"the engine for {model_version} exited with {proc.returncode}: see {log}")
            if self._healthy(url):
                old = self._procs.get(model_version)
                self._procs[model_version] = proc
                if old is not None and old is not proc:
                    self._terminate(old)
                return url, proc
            time.sleep(0.2)
        self._terminate(proc)
        raise EngineStartError(f"the engine for {model_version} did not answer /health in {START_TIMEOUT_S:.0f}s")

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def _alive(self, model_version: str) -> bool:
        proc = self._procs.get(model_version)
        return proc is not None and proc.poll() is None

    def _retire(self, model_version: str) -> None:
        """SIGTERM: the engine stops accepting, finishes what it holds, exits (in the background)."""
        proc = self._procs.pop(model_version, None)
        if proc is not None:
            threading.Thread(target=self._terminate, args=(proc, DRAIN_TIMEOUT_S), daemon=True).start()

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()

    def _ensure_watchdog(self) -> None:
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._watch, name="engine-watchdog", daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        """Restart the recorded engine when its process dies (as SageMaker replaces a failed instance)."""
        while not self._stopping.wait(1.0):
            current = self.current()
            if not current:
                continue
            version = current["model_version"]
            with self._lock:
                if self._stopping.is_set() or self._alive(version):
                    continue
                try:
                    url, proc = self._start(version, Path(current["export_dir"]))
                except EngineStartError:
                    continue
                current.update(url=url, pid=proc.pid, restarted_at=utcnow())
                self._state.put(ENDPOINTS_PK, LOCAL_TARGET, current)
