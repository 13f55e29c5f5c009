"""Bootstrap and fault injection: raw adapters when off, every local port wrapped when on."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.adapters.local.bus import LocalEventBus
from docllm.adapters.local.jobs import LocalJobRunner
from docllm.adapters.local.objects import LocalObjectStore
from docllm.adapters.local.queue import SqliteQueue
from docllm.adapters.local.search import LocalSearchIndex
from docllm.adapters.local.state import SqliteStateStore
from docllm.bootstrap import Platform, build_platform, reset_platforms
from docllm.events.envelope import BusEvent
from docllm.exceptions import ConfigurationError
from docllm.faults import FaultInjector, FaultProxy, InjectedFault, parse_faults, read_trace, unwrap
from docllm.ports.bus import EventBus
from docllm.ports.jobs import JobRunner
from docllm.ports.objects import ObjectStore
from docllm.ports.queue import Queue
from docllm.ports.search import SearchIndex
from docllm.ports.state import Delete, Put, StateStore
from docllm.settings import Settings
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "runtime" / "template.yaml"
PORTS = {
    "objects": (LocalObjectStore, ObjectStore),
    "bus": (LocalEventBus, EventBus),
    "default_bus": (LocalEventBus, EventBus),
    "state": (SqliteStateStore, StateStore),
    "queue": (SqliteQueue, Queue),
    "local_queue": (SqliteQueue, Queue),
    "jobs": (LocalJobRunner, JobRunner),
    "search": (LocalSearchIndex, SearchIndex),
}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch):
    for name in ("DOCLLM_FAULTS", "DOCLLM_FAULTS_TRACE", "DOCLLM_JOB_FAULTS", "DOCLLM_JOB_FAULTS_TRACE"):
        monkeypatch.delenv(name, raising=False)
    reset_platforms()
    yield
    reset_platforms()


def platform(tmp_path: Path, **kw) -> Platform:
    settings = Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path / "data")})
    return Platform(settings, template=FIXTURE, **kw)


def test_off_by_default_bootstrap_hands_out_the_raw_adapters(tmp_path):
    p = platform(tmp_path)
    assert p.faults is None
    for name, (adapter, _port) in PORTS.items():
        assert type(getattr(p, name)) is adapter, name
    assert p.jobs._environment == {"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(p.data_dir)}


def test_with_faults_in_the_environment_every_local_port_is_wrapped_and_still_passes_isinstance(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCLLM_FAULTS", "kill_after_side_effect=1000")
    p = platform(tmp_path)
    assert p.faults is not None and p.faults.config.kill_after_side_effect == 1000
    for name, (adapter, port) in PORTS.items():
        wrapped = getattr(p, name)
        assert type(wrapped) is FaultProxy and type(unwrap(wrapped)) is adapter, name
        assert isinstance(wrapped, port) and isinstance(wrapped, adapter), name
    assert p.queue is p.local_queue
    # the local stand-ins of what AWS does by itself use the raw adapters
    runner = unwrap(p.jobs)
    assert runner._objects is unwrap(p.objects) and runner._bus is unwrap(p.default_bus)
    assert unwrap(p.bus)._queue is unwrap(p.local_queue)
    assert runner._environment["DOCLLM_FAULTS"] == ""  # the job process does not inherit the runtime's faults


def test_the_platforms_built_from_the_environment_share_the_process_injector(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCLLM_FAULTS", "state.put:nth=1")
    monkeypatch.setenv("DOCLLM_DATA_DIR", str(tmp_path / "data"))
    assert build_platform().faults is platform(tmp_path).faults is not None


def test_an_explicit_injector_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCLLM_FAULTS", "state.put:p=1")
    inj = FaultInjector(parse_faults("objects.get:nth=1"))
    p = platform(tmp_path, faults=inj)
    assert p.faults is inj
    assert type(p.state) is SqliteStateStore  # nothing of state is intercepted by this injector
    p.objects.put("RawBucket", "a.md", b"x")
    with pytest.raises(InjectedFault):
        p.objects.get("RawBucket", "a.md")
    assert p.objects.get("RawBucket", "a.md") == b"x"


def test_an_invalid_fault_spec_stops_the_platform_from_being_built(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCLLM_FAULTS", "state.put:sometimes")
    with pytest.raises(ConfigurationError, match="unknown option 'sometimes'"):
        platform(tmp_path)


def test_notifications_are_not_side_effects_but_reach_the_queue(tmp_path):
    trace = tmp_path / "trace.tsv"
    p = platform(tmp_path, faults=FaultInjector(parse_faults("bus.publish:p=1", trace=trace)))
    info = p.objects.put("RawBucket", "good/a.md", b"# A")
    assert p.local_queue.stats("GoodQueue").visible == 1  # S3's notification went out, unfaulted
    (msg,) = p.local_queue.receive("GoodQueue")
    p.local_queue.delete("GoodQueue", msg.receipt)
    with pytest.raises(InjectedFault):
        p.default_bus.publish([BusEvent(detail_type="Object Created", source="aws.s3")])
    p.state.transact([Put("docs", "a", {"n": 1}), Delete("outbox", "1#e")])
    assert [(e.seq, e.op, e.outcome) for e in read_trace(trace)] == [
        (1, "objects.put", "ok"),
        (2, "queue.delete", "ok"),
        (3, "bus.publish", "fault-before"),
        (4, "state.transact", "ok"),
    ]
    assert read_trace(trace)[0].detail == "RawBucket good/a.md" and info.key == "good/a.md"
    assert read_trace(trace)[2].detail.startswith("default Object Created")
    assert read_trace(trace)[3].detail == "put docs a,delete outbox 1#e"


def test_jobs_get_the_job_fault_spec_as_their_own(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCLLM_JOB_FAULTS", "objects.put:nth=1")
    p = platform(tmp_path)
    assert p.faults is None and type(p.jobs) is LocalJobRunner
    assert p.jobs._environment["DOCLLM_FAULTS"] == "objects.put:nth=1"
