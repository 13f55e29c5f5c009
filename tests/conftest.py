"""Fixtures every tier shares: the team's reference material and the real AWS event samples."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EVENTS_REAL = SHARED / "events" / "real"
CORPUS = SHARED / "corpus"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout; tests that need it skip cleanly without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared (team reference material) is not present")
    return SHARED


@pytest.fixture(scope="session")
def corpus_dir(shared_dir: Path) -> Path:
    if not (shared_dir / "corpus").is_dir():
        pytest.skip("../shared/corpus is not present")
    return shared_dir / "corpus"


@pytest.fixture(scope="session")
def real_events_dir(shared_dir: Path) -> Path:
    if not (shared_dir / "events" / "real").is_dir():
        pytest.skip("../shared/events/real is not present")
    return shared_dir / "events" / "real"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Each test leaves ``os.environ`` as it found it. ``LocalRuntime.prepare`` exports the functions'
    environment (``DOCLLM_TEMPLATE`` among it) into the process, as Lambda gives each function its own;
    without this a runtime on a fixture template would hand that template to every later subprocess."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module", autouse=True)
def _engine_servers_stopped() -> Iterator[None]:
    """Each test module stops the local engines it left running. An engine exits by itself when the
    process that started it exits (``DOCLLM_ENGINE_PARENT_PID``), which is right for ``docllm`` but never
    happens inside one pytest process, and a platform run in-process (the demo's, a deploy's) keeps its
    engines' watchdog thread, which restarts an engine that is merely killed. So, when a module leaves
    engines: every engine supervisor of the process is stopped (its watchdog ends, its engines drain),
    then any engine server still running that this module started is terminated."""
    import gc

    import psutil

    from docllm.adapters.local.engines import LocalEngines

    def engines_left() -> list[psutil.Process]:
        children = psutil.Process().children(recursive=True)
        return [c for c in children if c.pid not in before and "docllm.serving.server" in " ".join(_cmdline(c))]

    before = {c.pid for c in psutil.Process().children(recursive=True)}
    yield
    if not engines_left():
        return  # most modules start no engine: no heap walk for them
    for o in gc.get_objects():  # no supervisor outlives its module (none is session-scoped)
        if isinstance(o, LocalEngines):
            o.stop_all(timeout_s=10)
    left = engines_left()
    for c in left:
        c.terminate()
    _, alive = psutil.wait_procs(left, timeout=10)
    for c in alive:
        c.kill()


def _cmdline(proc: Any) -> list[str]:
    import psutil

    try:
        return list(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
