"""Enumerating kill points in-process: the fault injector's kill stand-in raises :class:`Killed` (a
``BaseException`` no handler catches; SQLite rolls the open transaction back as a dead process's
would), then the data directory is recovered as ``docllm up`` recovers it after a crash."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform, reset_platforms
from docllm.faults import FaultInjector, parse_faults
from docllm.runtime.local import LocalRuntime
from tests.conftest import REPO


class Killed(BaseException):
    """The process 'died' here."""


def _kill() -> None:
    raise Killed


def drain_queue(rt: LocalRuntime, queue: str) -> None:
    """Deliver ``queue``'s messages to its function until it is empty, as the runtime's worker would."""
    from docllm.lambda_support import LAST_FAILURES

    assert rt.platform is not None
    q = rt.platform.local_queue
    ((fn, src),) = [(f, s) for f in rt.wiring.functions.values() for s in f.sqs_sources if s.queue == queue]
    while messages := q.receive(queue, max_messages=src.batch_size):
        rt._invoke(fn, src, rt.handlers[fn.name], messages, LAST_FAILURES)


def runtime(data_dir: Path, faults: FaultInjector | None = None) -> LocalRuntime:
    """The runtime's handlers and recovery, without its threads (the test drives the queues)."""
    rt = LocalRuntime(data_dir, template=REPO / "template.yaml", port=0, auth=False)
    rt.prepare(faults)
    return rt


def kill_once(
    base: Path,
    workdir: Path,
    n: int,
    when: str,
    drain: Callable[[LocalRuntime], None],
    snapshot: Callable[[Platform], Any],
    expected: Any,
    *,
    total: int | None = None,
) -> None:
    """A copy of ``base`` drained with a kill at side effect ``n`` (``when``: after or before it), then
    recovered and drained again, as `docllm up` would; it must end with ``snapshot == expected``."""
    data_dir = workdir / f"{when}-{n}"
    shutil.copytree(base, data_dir)
    rt = runtime(data_dir, FaultInjector(parse_faults(f"kill_{when}_side_effect={n}"), kill=_kill))
    with pytest.raises(Killed):
        drain(rt)
    reset_platforms()
    survivor = runtime(data_dir)  # as `docllm up` starts after a crash: recover, relay, redeliver
    drain(survivor)
    assert survivor.platform is not None
    of = f" of {total}" if total is not None else ""
    assert snapshot(survivor.platform) == expected, f"killed {when} side effect {n}{of}"
    reset_platforms()


def kill_at_every_point(
    base: Path,
    workdir: Path,
    total: int,
    when: str,
    drain: Callable[[LocalRuntime], None],
    snapshot: Callable[[Platform], Any],
    expected: Any,
) -> None:
    """:func:`kill_once` for N = 1..total: each must end with ``snapshot == expected``."""
    for n in range(1, total + 1):
        kill_once(base, workdir, n, when, drain, snapshot, expected, total=total)
