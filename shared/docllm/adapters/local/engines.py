"""The `local` deployment target: engine server processes supervised by ``docllm up``.

What SageMaker does for an endpoint, done for one machine: the export is copied out of the
artifact bucket, ``python -m docllm.serving.server`` is started on a free loopback port and
waited for until it answers ``/health`` (:meth:`LocalEngines.start`). Which engines serve is the
endpoint record (state ``endpoints/local``): the *stable* version (``model_version``, ``url``) and,
during a canary rollout, a ``canary`` (``model_version``, ``url``, ``weight``, ``bake_until``…) that
takes a share of the requests. The deploy stage writes that record — through the outbox, with the
event that announces it — inside :meth:`LocalEngines.changing`, which holds the engines still
meanwhile and, once the record is committed, retires every engine it no longer names: SIGTERM makes
an engine stop accepting, finish every request in flight and exit, so a swap, a promotion or an
aborted canary fails no request (the inference client retries a refused connection once against
the engine recorded since).

A watchdog restarts a recorded engine that dies (stable or canary) and, when a canary's bake
period is over, calls :attr:`LocalEngines.on_bake_end` (the deploy stage's promotion rule). ``docllm up``
restarts the recorded engines after a restart of the platform (:meth:`LocalEngines.restore`) and stops
them when the platform stops.

``DOCLLM_ENGINE_FAULTS="VERSION=SPEC,..."`` (a testing aid, :mod:`docllm.serving.faults`) starts
the engine of VERSION with ``--fault SPEC``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from docllm.adapters.local.files import private_dir
from docllm.exceptions import TransientError
from docllm.ports.objects import ObjectStore, split_uri
from docllm.ports.state import StateStore
from docllm.records import utcnow
from docllm.serving.faults import ENV_ENGINE_FAULTS, EngineFault, parse_engine_faults

ENDPOINTS_PK = "endpoints"
LOCAL_TARGET = "local"
#: Time for an engine to load its export and answer /health.
START_TIMEOUT_S = 180.0
#: Time a replaced engine has to finish the requests it holds.
DRAIN_TIMEOUT_S = 120.0
#: How often the watchdog looks at the engines and the canary's bake period.
WATCH_INTERVAL_S = 1.0

log = logging.getLogger(__name__)


class EngineStartError(TransientError):
    """The engine process exited or did not become healthy in time (its log says why)."""


ENV_STANDBY = "DOCLLM_ENGINE_STANDBY"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def served_entries(record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The engines an endpoint record names: the stable one, then the canary (if any).

    >>> [e["model_version"] for e in served_entries({"model_version": "v1", "canary": {"model_version": "v2"}})]
    ['v1', 'v2']
    """
    if not record:
        return []
    entries = [dict(record)] if record.get("model_version") else []
    canary = record.get("canary")
    if isinstance(canary, Mapping) and canary.get("model_version"):
        entries.append(dict(canary))
    return entries


class LocalEngines:
    """Starts, watches, retires and stops the local engine processes of one data directory."""

    def __init__(
        self,
        root: Path,
        *,
        state: StateStore,
        objects: ObjectStore,
        python: str = sys.executable,
        threads: int | None = None,
        faults: Mapping[str, EngineFault] | None = None,
        standby: bool | None = None,
    ) -> None:
        self.root = Path(root)
        #: Keep the version a deployment replaced running, without traffic, until the next deployment:
        #: a rollback to it is then a switch of the endpoint record, not an engine start (seconds).
        #: None: ``DOCLLM_ENGINE_STANDBY`` (default on; "0" retires a replaced engine at once).
        self.standby = os.environ.get(ENV_STANDBY, "1") != "0" if standby is None else standby
        self._state = state
        self._objects = objects
        self._python = python
        self._threads = threads
        #: Engine faults by version; None: ``$DOCLLM_ENGINE_FAULTS``, read when an engine starts.
        self._faults = faults
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # model version -> process
        self._urls: dict[str, str] = {}  # model version -> where its process listens
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        #: Called by the watchdog (with the target) once a canary's ``bake_until`` has passed, every
        #: tick until the canary is promoted or aborted; the deploy stage registers its rule here.
        self.on_bake_end: Callable[[str], object] | None = None

    # -- the target ---------------------------------------------------------------------------------
    def current(self) -> dict[str, Any] | None:
        return self._state.get(ENDPOINTS_PK, LOCAL_TARGET)

    def start(self, model_version: str, export_uri: str) -> dict[str, Any]:
        """An engine serving ``model_version``, started unless one runs already: ``{url, pid, export_dir}``.

        Serves nothing by itself: the endpoint record decides which engines take requests. Safe to
        repeat (a retried deployment reuses the engine its first attempt started).
        """
        with self._lock:
            running, url = self._procs.get(model_version), self._urls.get(model_version)
            if running is not None and running.poll() is None and url is not None and self._healthy(url):
                return {"url": url, "pid": running.pid, "export_dir": str(self._export_dir(model_version))}
            export = self._fetch(model_version, export_uri)
            url, proc = self._start(model_version, export)
            return {"url": url, "pid": proc.pid, "export_dir": str(export)}

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Hold the engines still while the endpoint record changes; then retire what it no longer names.

        The watchdog waits meanwhile (it would otherwise restart an engine from a record about to
        change). If the block raises, nothing is retired: an engine started for a change that did not
        commit keeps running, and the retry reuses it (or the next change retires it).
        """
        with self._lock:
            yield
            self.settle()
        self._ensure_watchdog()

    def settle(self) -> list[str]:
        """Retire (drain, then stop) every engine whose version the endpoint record does not name (but
        its `previous_version`, kept as a warm standby while :attr:`standby` is on)."""
        with self._lock:
            record = self.current()
            named = {e["model_version"] for e in served_entries(record)}
            if self.standby and record and record.get("previous_version"):
                named.add(str(record["previous_version"]))  # the warm standby of a rollback
            retired = [v for v in list(self._procs) if v not in named]
            for version in retired:
                self._retire(version)
            return retired

    def verify(self, model_version: str) -> bool:
        """Whether ``model_version`` takes all the local traffic: the endpoint record names it with no
        canary beside it, and the engine it names answers ``/v1/models`` with that version."""
        record = self.current()
        if not record or record.get("model_version") != model_version or record.get("canary"):
            return False
        try:
            with urllib.request.urlopen(f"{str(record['url']).rstrip('/')}/v1/models", timeout=5) as r:
                payload = json.loads(r.read())
        except (OSError, ValueError, KeyError):
            return False
        entries = payload.get("data") if isinstance(payload, dict) else None
        return any(isinstance(e, dict) and e.get("id") == model_version for e in entries or [])

    def restore(self) -> dict[str, Any] | None:
        """After ``docllm up`` starts: serve the recorded versions again (on new ports)."""
        current = self.current()
        if not current:
            return None
        with self._lock:
            started = False
            for entry in self._targets(current):
                export = Path(entry["export_dir"])
                if not export.is_absolute() or not (export / "config.json").exists():
                    continue
                url, proc = self._start(entry["model_version"], export)
                self._moved(entry, url, proc.pid, "restored_at")
                started = True
            if not started:
                return None
            self._state.put(ENDPOINTS_PK, LOCAL_TARGET, current)
            self._ensure_watchdog()
            return current

    def stop_all(self, timeout_s: float = 30) -> None:
        self._stopping.set()
        with self._lock:
            procs = list(self._procs.items())
            self._procs.clear()
            self._urls.clear()
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
    @staticmethod
    def _targets(record: dict[str, Any]) -> list[dict[str, Any]]:
        """The record's engine entries, as the mutable dicts inside it (the stable one is the record)."""
        canary = record.get("canary")
        entries = [record, *([canary] if isinstance(canary, dict) else [])]
        return [e for e in entries if e.get("model_version") and e.get("export_dir")]

    @staticmethod
    def _moved(entry: dict[str, Any], url: str, pid: int, stamp: str) -> None:
        if entry.get("endpoint") == entry.get("url"):
            entry["endpoint"] = url  # the local target's endpoint is its URL
        entry.update(url=url, pid=pid, **{stamp: utcnow()})

    def _export_dir(self, model_version: str) -> Path:
        return self.root / model_version / "model"

    def _fetch(self, model_version: str, export_uri: str) -> Path:
        """The export, copied once into the data directory (what SageMaker's model download does)."""
        target = self._export_dir(model_version)
        if (target / "config.json").exists():
            return target
        partial = private_dir(self.root / model_version / "model.partial")
        bucket, prefix = split_uri(export_uri if export_uri.endswith("/") else export_uri + "/")
        for info in self._objects.list(bucket, prefix):
            self._objects.download_file(bucket, info.key, partial / info.key[len(prefix) :])
        os.replace(partial, target)
        return target

    def _fault_for(self, model_version: str) -> EngineFault | None:
        faults = self._faults
        if faults is None:
            faults = parse_engine_faults(os.environ.get(ENV_ENGINE_FAULTS, ""))
        return faults.get(model_version)

    def _start(self, model_version: str, export: Path) -> tuple[str, subprocess.Popen[bytes]]:
        port = _free_port()
        log_path = private_dir(self.root / model_version) / "engine.log"
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
        fault = self._fault_for(model_version)
        if fault is not None:
            cmd += ["--fault", fault.spec]
        with open(log_path, "ab") as out:
            # The engine watches this process and drains itself when it goes (even by SIGKILL): no engine
            # outlives the platform that supervised it.
            env = {**os.environ, "DOCLLM_ENGINE_PARENT_PID": str(os.getpid())}
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EngineStartError(f"the engine for {model_version} exited with {proc.returncode}: see {log_path}")
            if self._healthy(url):
                old = self._procs.get(model_version)
                self._procs[model_version] = proc
                self._urls[model_version] = url
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
        self._urls.pop(model_version, None)
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
        if self._stopping.is_set():
            return
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._watch, name="engine-watchdog", daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL_S):
            try:
                self._check()
            except Exception:  # the watchdog outlives any one failure; the next tick tries again
                log.exception("engine watchdog")

    def _check(self) -> None:
        """Restart a recorded engine whose process died (as SageMaker replaces a failed instance);
        tell the deploy stage when a canary's bake period is over."""
        with self._lock:
            current = self.current()
            if not current or self._stopping.is_set():
                return
            moved = False
            for entry in self._targets(current):
                if self._alive(entry["model_version"]):
                    continue
                try:
                    url, proc = self._start(entry["model_version"], Path(entry["export_dir"]))
                except (EngineStartError, KeyError, OSError) as e:
                    log.warning("engine %s is down and did not restart: %s", entry.get("model_version"), e)
                    continue
                self._moved(entry, url, proc.pid, "restarted_at")
                moved = True
            if moved:
                self._state.put(ENDPOINTS_PK, LOCAL_TARGET, current)
        canary = current.get("canary")
        callback = self.on_bake_end
        if isinstance(canary, dict) and callback is not None and str(canary.get("bake_until") or "") <= utcnow():
            callback(LOCAL_TARGET)
