"""The injector and its proxy, on small fake adapters: probability, nth, lost responses, kills, the trace."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from docllm.events.envelope import BusEvent
from docllm.exceptions import ConfigurationError, TransientError
from docllm.faults import FaultInjector, FaultProxy, InjectedFault, parse_faults, read_trace, unwrap
from docllm.ports.state import StateStore


class Killed(BaseException):
    """What the test's stand-in for SIGKILL raises (BaseException: no handler swallows it)."""


def kill() -> None:
    raise Killed


class FakeState(StateStore):
    """A StateStore that records its writes, plus a method no port declares."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.log: list[str] = []
        self.flag = "raw"

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        return self.items.get((pk, sk))

    def put(self, pk: str, sk: str, item: dict[str, Any], *, if_absent: bool = False) -> None:
        self.items[pk, sk] = item
        self.log.append(f"put {pk} {sk}")

    def delete(self, pk: str, sk: str) -> None:
        self.items.pop((pk, sk), None)
        self.log.append(f"delete {pk} {sk}")

    def transact(self, writes: list[tuple[str, str]]) -> None:
        self.log.append(f"transact {len(writes)}")

    def frobnicate(self) -> str:
        self.log.append("frobnicate")
        return "done"

    def query(self, pk: str, sk_prefix: str = ""):
        return iter(sorted((sk, v) for (p, sk), v in self.items.items() if p == pk and sk.startswith(sk_prefix)))


class FakeBus:
    def __init__(self, name: str) -> None:
        self.name = name
        self.published: list[str] = []

    def publish(self, events: list[BusEvent]) -> None:
        self.published += [e.detail_type for e in events]


class FailingObjects:
    def put(self, bucket: str, key: str, body: bytes) -> None:
        raise TimeoutError("disk on fire")

    def get(self, bucket: str, key: str) -> bytes:
        return b"x"


def injector(spec: str, **kw: Any) -> FaultInjector:
    return FaultInjector(parse_faults(spec, **kw), kill=kill)


def outcomes(store: Any, method: str, calls: int) -> str:
    """``.`` for a call that went through, ``F`` for an injected fault."""
    out = ""
    for i in range(calls):
        try:
            getattr(store, method)("pk", f"s{i}", {})
            out += "."
        except InjectedFault:
            out += "F"
    return out


def event(detail_type: str) -> BusEvent:
    return BusEvent(detail_type=detail_type, source="docllm.test")


# -- probability ----------------------------------------------------------------------------------


def test_a_probability_rule_is_reproducible_for_a_seed_and_changes_with_it():
    runs = [outcomes(injector(f"state.put:p=0.3;seed={s}").wrap("state", FakeState()), "put", 200) for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]
    assert 30 <= runs[0].count("F") <= 90  # about 60 of 200


def test_one_rules_draws_do_not_depend_on_the_other_rules():
    alone = injector("state.put:p=0.5;seed=3").wrap("state", FakeState())
    crowded = injector("state.put:p=0.5;bus.publish:p=0.5;seed=3").wrap("state", FakeState())
    assert outcomes(alone, "put", 50) == outcomes(crowded, "put", 50)


def test_p_zero_never_fires_and_p_one_always_does():
    assert outcomes(injector("state.put:p=0").wrap("state", FakeState()), "put", 20) == "." * 20
    assert outcomes(injector("state.put:p=1").wrap("state", FakeState()), "put", 20) == "F" * 20


# -- nth ------------------------------------------------------------------------------------------------


def test_nth_fails_exactly_that_call_counted_per_operation():
    inj = injector("state.put:nth=2")
    state = inj.wrap("state", FakeState())
    state.delete("pk", "a")  # another operation: not counted for state.put
    assert outcomes(state, "put", 4) == ".F.."
    assert inj.calls("state.put") == 4
    assert inj.calls("state.delete") == 0  # nothing asks for it: not even intercepted


def test_both_buses_share_the_bus_publish_count():
    inj = injector("bus.publish:nth=2")
    platform_bus, default_bus = inj.wrap("bus", FakeBus("DocllmBus")), inj.wrap("bus", FakeBus("default"))
    platform_bus.publish([event("A")])
    with pytest.raises(InjectedFault, match=r"bus\.publish \(call 2"):
        default_bus.publish([event("B")])
    assert unwrap(default_bus).published == []


def test_several_rules_for_one_operation_each_fire():
    state = injector("state.put:nth=1;state.put:nth=3").wrap("state", FakeState())
    assert outcomes(state, "put", 4) == "F.F."


# -- before and after -----------------------------------------------------------------------------


def test_a_fault_before_the_call_leaves_nothing_done():
    raw = FakeState()
    state = injector("state.put:nth=1").wrap("state", raw)
    with pytest.raises(InjectedFault) as info:
        state.put("pk", "sk", {"v": 1})
    assert isinstance(info.value, TransientError)  # handlers and queues retry it
    assert raw.log == [] and raw.get("pk", "sk") is None


def test_a_lost_response_raises_after_the_write_happened():
    raw = FakeState()
    state = injector("state.put:nth=1,after").wrap("state", raw)
    with pytest.raises(InjectedFault, match="its response was lost"):
        state.put("pk", "sk", {"v": 1})
    assert raw.get("pk", "sk") == {"v": 1}


def test_reads_can_fail_too():
    objects = injector("objects.get:nth=1").wrap("objects", FailingObjects())
    with pytest.raises(InjectedFault):
        objects.get("b", "k")
    assert objects.get("b", "k") == b"x"


# -- kills ------------------------------------------------------------------------------------------------


def test_a_kill_rule_kills_before_or_after_the_call():
    before = injector("state.put:nth=2,kill").wrap("state", FakeState())
    before.put("pk", "a", {})
    with pytest.raises(Killed):
        before.put("pk", "b", {})
    assert unwrap(before).log == ["put pk a"]
    after = injector("state.put:nth=1,kill,after").wrap("state", FakeState())
    with pytest.raises(Killed):
        after.put("pk", "a", {})
    assert unwrap(after).log == ["put pk a"]


def test_kill_after_side_effect_counts_every_write_of_every_port_in_order():
    inj = injector("kill_after_side_effect=3")
    state, bus = inj.wrap("state", FakeState()), inj.wrap("bus", FakeBus("DocllmBus"))
    state.put("pk", "a", {})
    state.get("pk", "a")  # a read: not a side effect
    bus.publish([event("X")])
    with pytest.raises(Killed):
        state.delete("pk", "a")
    assert unwrap(state).log == ["put pk a", "delete pk a"]  # the third side effect happened, then the kill
    assert inj.side_effects == 3


def test_kill_before_side_effect_kills_before_the_write():
    inj = injector("kill_before_side_effect=2")
    state = inj.wrap("state", FakeState())
    state.put("pk", "a", {})
    with pytest.raises(Killed):
        state.put("pk", "b", {})
    assert unwrap(state).log == ["put pk a"]


def test_kill_after_a_side_effect_that_failed_still_kills_and_the_error_is_not_swallowed():
    inj = injector("kill_after_side_effect=1")
    objects = inj.wrap("objects", FailingObjects())
    with pytest.raises(Killed):
        objects.put("b", "k", b"")


def test_a_real_error_passes_through_unchanged():
    objects = injector("objects.put:nth=2").wrap("objects", FailingObjects())
    with pytest.raises(TimeoutError, match="disk on fire"):
        objects.put("b", "k", b"")


# -- the trace ------------------------------------------------------------------------------------------


def test_the_trace_has_one_line_per_side_effect_with_its_outcome_and_detail(tmp_path: Path):
    trace = tmp_path / "sub" / "trace.tsv"
    inj = injector("state.put:nth=2,after;state.delete:nth=1", trace=trace)
    state, bus = inj.wrap("state", FakeState()), inj.wrap("bus", FakeBus("DocllmBus"), label="DocllmBus")
    objects = inj.wrap("objects", FailingObjects())
    state.put("docs", "t/a.md", {"big": "x" * 1000})
    with pytest.raises(InjectedFault):
        state.put("docs", "t/b.md", {})
    with pytest.raises(InjectedFault):
        state.delete("docs", "t/a.md")
    bus.publish([event("Document Processed"), event("Document Removed")])
    with pytest.raises(TimeoutError):
        objects.put("RawBucket", "t/c.md", b"body")
    objects.get("RawBucket", "t/c.md")  # a read: not traced
    inj.close()
    entries = read_trace(trace)
    assert [(e.seq, e.op, e.outcome, e.detail) for e in entries] == [
        (1, "state.put", "ok", "docs t/a.md"),
        (2, "state.put", "fault-after", "docs t/b.md"),
        (3, "state.delete", "fault-before", "docs t/a.md"),
        (4, "bus.publish", "ok", "DocllmBus Document Processed,Document Removed"),
        (5, "objects.put", "error:TimeoutError", "RawBucket t/c.md"),
    ]
    assert {e.pid for e in entries} == {os.getpid()}


def test_a_killed_run_traces_its_last_side_effect_as_the_kill(tmp_path: Path):
    trace = tmp_path / "trace.tsv"
    inj = injector("kill_after_side_effect=2", trace=trace)
    state = inj.wrap("state", FakeState())
    state.put("pk", "a", {})
    with pytest.raises(Killed):
        state.put("pk", "b", {})
    assert [e.outcome for e in read_trace(trace)] == ["ok", "kill-after"]


def test_no_trace_file_reads_as_an_empty_trace(tmp_path: Path):
    assert read_trace(tmp_path / "absent") == []


# -- the proxy ---------------------------------------------------------------------------------------------


def test_the_proxy_intercepts_only_the_named_methods_and_is_otherwise_the_adapter():
    raw = FakeState()
    state = injector("state.put:nth=1").wrap("state", raw)
    assert type(state) is FaultProxy and unwrap(state) is raw and unwrap(raw) is raw
    assert isinstance(state, StateStore) and isinstance(state, FakeState)
    assert state.get is not None and state.get.__self__ is raw  # not intercepted: the bound method itself
    assert state.flag == "raw"
    state.flag = "set through the proxy"  # e.g. jobs.on_log = ...
    assert raw.flag == "set through the proxy"
    assert "frobnicate" in dir(state) and "FaultProxy state ['put']" in repr(state)


def test_any_method_can_be_named_even_one_no_port_declares():
    inj = injector("state.frobnicate:nth=1")
    state = inj.wrap("state", FakeState())
    with pytest.raises(InjectedFault):
        state.frobnicate()
    assert state.frobnicate() == "done"
    assert inj.side_effects == 0  # not a declared write: faulted but not counted


def test_state_transact_is_a_side_effect_without_any_rule_naming_it():
    inj = injector("kill_after_side_effect=1")
    state = inj.wrap("state", FakeState())
    with pytest.raises(Killed):
        state.transact([("pk", "a"), ("pk", "b")])
    assert unwrap(state).log == ["transact 2"]


def test_wildcards_cover_the_side_effects_of_one_port_or_of_all():
    state = injector("state.*:p=1").wrap("state", FakeState())
    with pytest.raises(InjectedFault):
        state.transact([])
    assert state.get("pk", "a") is None  # reads are not in state.*
    bus = injector("*:p=1").wrap("bus", FakeBus("b"))
    with pytest.raises(InjectedFault):
        bus.publish([event("X")])


def test_a_port_with_nothing_to_intercept_is_not_wrapped():
    raw = FakeBus("b")
    assert injector("state.put:p=1").wrap("bus", raw) is raw


def test_naming_a_method_the_adapter_lacks_fails_when_the_port_is_built():
    with pytest.raises(ConfigurationError, match="FakeState has no method 'puts'"):
        injector("state.puts:nth=1").wrap("state", FakeState())
    with pytest.raises(ConfigurationError, match="no port 'disk'"):
        injector("state.put:nth=1").wrap("disk", FakeState())
