"""The engine in a child process: the same tokens and refusals as in-process, and no hang when a side dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from docllm.ports.inference import GenerationParams
from docllm.serving import engine_process
from docllm.serving.engine import LocalEngine
from docllm.serving.engine_process import EngineProcess
from docllm.serving.exceptions import EngineBusyError, EngineUnavailableError, PromptTooLongError
from tests.unit.serving.conftest import build_export

PROMPTS = ["Amazon S3 stores", "A bucket is", "Versioning keeps every version of an object . Lifecycle", "Café"]
KWARGS = {"threads": 1, "max_batch": 2, "max_queue": 1}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_export(tmp_path_factory.mktemp("export"), block_size=512)


@pytest.fixture(scope="module")
def child(export: Path) -> Iterator[EngineProcess]:
    engine = EngineProcess(export, model_name="v1", **KWARGS)
    yield engine
    engine.close(drain_timeout_s=5)


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def metric(engine: EngineProcess, prefix: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in engine.registry.render().splitlines() if ln.startswith(prefix))


def test_greedy_tokens_equal_the_in_process_engine_alone_and_concurrently(export: Path, child: EngineProcess) -> None:
    params = GenerationParams(max_tokens=40, stop=["never"])
    with LocalEngine.from_export(export, model_name="v1", **KWARGS) as local:
        expected = [local.generate(p, params).text for p in PROMPTS]
    alone = [child.submit(p, params).result() for p in PROMPTS]
    assert [g.text for g in alone] == expected
    assert all(g.model == "v1" and g.completion_tokens > 0 for g in alone)
    # Three at once: both rows and the one queue place, so one waits and rows are reused.
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda p: child.submit(p, params).result().text, PROMPTS))
    assert together == expected


def test_streamed_deltas_join_to_the_whole_completion(child: EngineProcess) -> None:
    params = GenerationParams(max_tokens=30)
    deltas = list(child.submit("A bucket is", params))
    assert len(deltas) > 1 and "".join(deltas) == child.submit("A bucket is", params).result().text


def test_refusals_are_raised_at_submit_without_reaching_the_child(child: EngineProcess) -> None:
    with pytest.raises(PromptTooLongError, match="context of 512 tokens"):
        child.submit("Amazon", GenerationParams(max_tokens=600))
    long = GenerationParams(max_tokens=480, stop=["never"])
    handles = [child.submit("Amazon", long) for _ in range(3)]  # two rows and the one queue place
    rejected = metric(child, 'docllm_engine_requests_total{outcome="rejected"}')
    t0 = time.monotonic()
    with pytest.raises(EngineBusyError, match="queue is full"):
        child.submit("Amazon", GenerationParams(max_tokens=1))
    assert time.monotonic() - t0 < 1
    assert metric(child, 'docllm_engine_requests_total{outcome="rejected"}') == rejected + 1
    cancelled = metric(child, 'docllm_engine_requests_total{outcome="cancelled"}')
    for h in handles:
        h.cancel()
    wait_for(lambda: metric(child, 'docllm_engine_requests_total{outcome="cancelled"}') >= cancelled + 2)
    wait_for(lambda: metric(child, "docllm_engine_batch_size") == 0 and metric(child, "docllm_engine_queue_depth") == 0)
    assert child.submit("Amazon", GenerationParams(max_tokens=3)).result().completion_tokens == 3


def test_a_metrics_reply_that_comes_too_late_does_not_answer_the_next_call(
    child: EngineProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = metric(child, 'docllm_engine_requests_total{outcome="length"}')
    with monkeypatch.context() as m:
        m.setattr(engine_process, "METRICS_TIMEOUT_S", 0.0)
        # Gave up before the child answered (on a busy machine the answer can win the race: retry).
        assert any(child.registry.render() == "" for _ in range(50))
    time.sleep(0.5)  # the late reply has arrived meanwhile
    assert child.submit("Amazon", GenerationParams(max_tokens=2)).result().finish_reason == "length"
    assert metric(child, 'docllm_engine_requests_total{outcome="length"}') == before + 1


def test_a_signal_to_the_process_group_does_not_stop_the_child(child: EngineProcess) -> None:
    pid = child._process.pid
    assert pid is not None
    handle = child.submit("Amazon", GenerationParams(max_tokens=200, stop=["never"]))
    os.kill(pid, signal.SIGTERM)  # what a Ctrl-C or a group-wide stop delivers to it too
    os.kill(pid, signal.SIGINT)
    assert handle.result().completion_tokens == 200
    assert child.alive()


def test_a_child_that_dies_fails_requests_in_flight_and_refuses_new_ones(export: Path) -> None:
    engine = EngineProcess(export, model_name="v1", **KWARGS)
    handle = engine.submit("Amazon", GenerationParams(max_tokens=480, stop=["never"]))
    deltas = iter(handle)
    next(deltas)
    assert engine._process.pid is not None
    os.kill(engine._process.pid, signal.SIGKILL)  # an out-of-memory kill, say
    t0 = time.monotonic()
    with pytest.raises(EngineUnavailableError, match="stopped"):
        list(deltas)
    assert time.monotonic() - t0 < 10
    wait_for(lambda: not engine.alive())
    with pytest.raises(EngineUnavailableError):
        engine.submit("Amazon", GenerationParams(max_tokens=1))
    engine.close()


def test_the_child_exits_when_its_parent_dies(export: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from docllm.serving.engine_process import EngineProcess
        engine = EngineProcess(Path({str(export)!r}), model_name="v1", threads=1)
        print(engine._process.pid, flush=True)
        os._exit(0)  # no close(): the pipe closing is all the child learns
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    child_pid = int(out.stdout.split()[-1])
    wait_for(lambda: not _running(child_pid), timeout=30)


def test_a_scheduler_that_fails_stops_the_child_so_the_server_can_restart_it(export: Path) -> None:
    # Unvalidated params the scheduler cannot use stand for a bug in it: it fails every request.
    poison = GenerationParams.model_construct(**{**GenerationParams(max_tokens=5).model_dump(), "stop": 5})
    # The engine closes before the pool joins its thread: a request that hangs fails the test, no more.
    with ThreadPoolExecutor(1) as pool, EngineProcess(export, model_name="v1", **KWARGS) as engine:
        request = pool.submit(lambda: engine.submit("Amazon", poison).result())
        with pytest.raises(EngineUnavailableError):
            request.result(timeout=30)
        wait_for(lambda: not engine._process.is_alive(), timeout=15)  # the process, not only its scheduler
        assert not engine.alive()


def test_an_interpreter_that_exits_without_close_does_not_wait_forever_for_the_child(export: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from docllm.serving.engine_process import EngineProcess
        engine = EngineProcess(Path({str(export)!r}), model_name="v1", threads=1)
        print(engine.submit("Amazon", __import__("docllm.ports.inference").ports.inference.GenerationParams(
            max_tokens=3)).result().completion_tokens, flush=True)
        # no close(): multiprocessing's exit handler would join the (SIGTERM-ignoring) child forever
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split()[-1] == "3"


def test_an_export_that_does_not_load_is_an_error_naming_the_cause(tmp_path: Path, export: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.model").write_bytes((export / "tokenizer.model").read_bytes())
    with pytest.raises(RuntimeError, match="did not start"):
        EngineProcess(broken, model_name="v1", threads=1, start_timeout_s=120)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
