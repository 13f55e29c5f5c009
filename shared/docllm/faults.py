"""Fault injection for the local adapters and the runtime (``DOCLLM_FAULTS``).

Off by default, and then free: :func:`injector_from_env` returns ``None`` and
bootstrap hands out the raw adapters. When on, bootstrap wraps each port it
builds in a :class:`FaultProxy` that intercepts the named methods, and only
those; every other attribute is the adapter's own. ``docs/faults.md`` is the
reference; in short::

    DOCLLM_FAULTS="bus.publish:p=0.1;state.put:nth=3,after;jobs.submit:nth=1,kill;seed=7"
    DOCLLM_FAULTS="kill_after_side_effect=12"        # SIGKILL right after the 12th side effect
    DOCLLM_FAULTS_TRACE=/tmp/trace.tsv                 # one line per side effect, to enumerate kill points

An injected error is :class:`InjectedFault`, a :class:`TransientError`, so the
handlers and the queue retry it as they would a throttled call.

>>> cfg = parse_faults("state.put:nth=2,after;seed=7")
>>> cfg.rules[0].op, cfg.rules[0].nth, cfg.rules[0].after, cfg.seed
('state.put', 2, True, 7)
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

from docllm.exceptions import ConfigurationError, TransientError

__all__ = [
    "ENV_FAULTS",
    "ENV_TRACE",
    "PORTS",
    "SIDE_EFFECTS",
    "FaultConfig",
    "FaultInjector",
    "FaultProxy",
    "FaultRule",
    "InjectedFault",
    "TraceEntry",
    "injector_from_env",
    "job_fault_environment",
    "parse_faults",
    "read_trace",
    "reset_injectors",
    "unwrap",
]

ENV_FAULTS = "DOCLLM_FAULTS"
ENV_TRACE = "DOCLLM_FAULTS_TRACE"
ENV_JOB_FAULTS = "DOCLLM_JOB_FAULTS"
ENV_JOB_TRACE = "DOCLLM_JOB_FAULTS_TRACE"

#: The write operations of each port: what ``kill_*_side_effect`` counts and the trace records.
#: A rule may name any other method too (``objects.get``, a method added to a port later);
#: a new *write* method belongs here so that crash tests count it.
SIDE_EFFECTS: dict[str, frozenset[str]] = {
    "objects": frozenset({"put", "put_file", "delete"}),
    "bus": frozenset({"publish"}),
    "state": frozenset({"put", "delete", "transact"}),
    "queue": frozenset({"send", "send_many", "delete", "retry_later", "dead_letter"}),
    "jobs": frozenset({"submit", "stop"}),
    "search": frozenset({"replace_document", "replace_documents", "delete_document"}),
    # promote = two alias writes; _write_alias is what set_alias/promote call on the adapter itself.
    "registry": frozenset({"register", "set_status", "mark_rolled_back", "set_alias", "promote", "_write_alias"}),
    "compliance": frozenset({"put_once"}),
}
PORTS = tuple(SIDE_EFFECTS)

_log = logging.getLogger("docllm.faults")
T = TypeVar("T")
_GLOBALS = ("seed", "kill_after_side_effect", "kill_before_side_effect", "trace")
_OP = re.compile(r"^(\*|(?P<port>[a-z_]+)\.(?P<method>\*|[A-Za-z][A-Za-z0-9_]*))$")


class InjectedFault(TransientError):
    """An error raised on purpose by the fault-injection harness (retried like any transient error)."""


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultRule:
    """One ``OP:OPTIONS`` item: when it fires (``p`` or ``nth``) and what it does."""

    op: str  # "state.put", "state.*" (the port's side effects) or "*" (every side effect)
    p: float | None = None
    nth: int | None = None
    after: bool = False  # run the real operation first: a lost response
    kill: bool = False  # SIGKILL instead of raising

    def matches(self, port: str, method: str) -> bool:
        if self.op == "*":
            return method in SIDE_EFFECTS[port]
        rule_port, _, rule_method = self.op.partition(".")
        if rule_port != port:
            return False
        return method in SIDE_EFFECTS[port] if rule_method == "*" else rule_method == method


@dataclass(frozen=True)
class FaultConfig:
    rules: tuple[FaultRule, ...] = ()
    seed: int = 0
    kill_after_side_effect: int | None = None
    kill_before_side_effect: int | None = None
    trace: Path | None = None

    @property
    def counts_side_effects(self) -> bool:
        """Whether every side effect must be seen, fault or not (kill points, trace)."""
        return (
            self.kill_after_side_effect is not None
            or self.kill_before_side_effect is not None
            or self.trace is not None
        )


def _bad(spec: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"{ENV_FAULTS}: {why} (in {spec!r}; see docs/faults.md)")


def _positive_int(spec: str, key: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise _bad(spec, f"{key} must be an integer, not {value!r}") from None
    if n < 1:
        raise _bad(spec, f"{key} must be at least 1, not {n}")
    return n


def _parse_rule(spec: str, item: str) -> FaultRule:
    op, _, options = item.partition(":")
    op = op.strip()
    m = _OP.match(op)
    if m is None:
        raise _bad(spec, f"{op!r} is not an operation: write PORT.METHOD, PORT.* or *")
    if m["port"] is not None and m["port"] not in SIDE_EFFECTS:
        raise _bad(spec, f"unknown port {m['port']!r} in {op!r}; ports: {', '.join(PORTS)}")
    p: float | None = None
    nth: int | None = None
    after = kill = False
    for raw in options.split(","):
        opt = raw.strip()
        key, eq, value = opt.partition("=")
        key, value = key.strip(), value.strip()
        if key == "p" and eq:
            try:
                p = float(value)
            except ValueError:
                raise _bad(spec, f"{op}: p must be a number, not {value!r}") from None
            if not 0.0 <= p <= 1.0:
                raise _bad(spec, f"{op}: p must be between 0 and 1, not {p}")
        elif key == "nth" and eq:
            nth = _positive_int(spec, f"{op}: nth", value)
        elif opt in {"after", "before"}:
            after = opt == "after"
        elif opt in {"kill", "raise"}:
            kill = opt == "kill"
        elif not opt:
            raise _bad(spec, f"{op}: empty option")
        else:
            raise _bad(spec, f"{op}: unknown option {opt!r}; options: p=P, nth=N, before|after, raise|kill")
    if (p is None) == (nth is None):
        raise _bad(spec, f"{op}: say when it fires with exactly one of p=P or nth=N")
    return FaultRule(op=op, p=p, nth=nth, after=after, kill=kill)


def parse_faults(spec: str, *, trace: str | Path | None = None) -> FaultConfig:
    """Parse a ``DOCLLM_FAULTS`` value; raise :class:`ConfigurationError` saying what is wrong.

    ``trace`` (``DOCLLM_FAULTS_TRACE``) is a file to append one line per side effect to;
    a ``trace=PATH`` item in ``spec`` does the same.

    >>> parse_faults("kill_after_side_effect=3").kill_after_side_effect
    3
    >>> parse_faults("objects.get:p=2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    docllm.exceptions.ConfigurationError: DOCLLM_FAULTS: objects.get: p must be between 0 and 1, not 2.0 ...
    """
    rules: list[FaultRule] = []
    seed = 0
    kill_after: int | None = None
    kill_before: int | None = None
    trace_path = Path(trace) if trace else None
    for raw in re.split(r"[;\n]", spec):
        item = raw.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if eq and key in _GLOBALS:
            if key == "seed":
                try:
                    seed = int(value)
                except ValueError:
                    raise _bad(spec, f"seed must be an integer, not {value!r}") from None
            elif key == "kill_after_side_effect":
                kill_after = _positive_int(spec, key, value)
            elif key == "kill_before_side_effect":
                kill_before = _positive_int(spec, key, value)
            else:
                if not value:
                    raise _bad(spec, "trace needs a file name")
                trace_path = Path(value)
        elif ":" in item:
            rules.append(_parse_rule(spec, item))
        else:
            raise _bad(spec, f"{item!r} is neither OP:OPTIONS nor one of {', '.join(k + '=' for k in _GLOBALS)}")
    return FaultConfig(
        rules=tuple(rules),
        seed=seed,
        kill_after_side_effect=kill_after,
        kill_before_side_effect=kill_before,
        trace=trace_path,
    )


# -- the trace ------------------------------------------------------------------------------------


class TraceEntry(NamedTuple):
    """One line of a trace file: ``seq<TAB>pid<TAB>op<TAB>outcome<TAB>detail``."""

    seq: int
    pid: int
    op: str
    outcome: str  # ok | error:<Type> | fault-before | fault-after | kill-before | kill-after
    detail: str


def read_trace(path: str | Path) -> list[TraceEntry]:
    """The entries of a trace file, in the order they were written (empty if there is no file)."""
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line:
            seq, pid, op, outcome, detail = line.split("\t", 4)
            entries.append(TraceEntry(int(seq), int(pid), op, outcome, detail))
    return entries


def _short(value: Any) -> str | None:
    if isinstance(value, str):
        return value if len(value) <= 80 else value[:77] + "..."
    if isinstance(value, Path):
        return _short(str(value))
    if isinstance(value, list | tuple):
        kinds = [getattr(v, "detail_type", None) for v in value]
        if kinds and all(isinstance(k, str) for k in kinds):  # events
            return ",".join(cast(list[str], kinds))
        if value and all(hasattr(v, "pk") and hasattr(v, "sk") for v in value):  # state writes (transact)
            return _short(",".join(f"{type(v).__name__.lower()} {v.pk} {v.sk}" for v in value))
        return f"[{len(value)}]"
    for attr in ("message_id", "name"):
        named = getattr(value, attr, None)
        if isinstance(named, str):
            return _short(named)
    return None


def describe_call(label: str, args: tuple[Any, ...]) -> str:
    """A short, one-line account of a call's positional arguments (ids, keys, detail types)."""
    parts = [label] if label else []
    parts += [s for s in map(_short, args) if s is not None]
    text = " ".join(parts)
    return re.sub(r"[\t\r\n]+", " ", text)[:200]


# -- the injector ---------------------------------------------------------------------------------


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class _Counters:
    side_effects: int = 0
    calls: dict[str, int] = field(default_factory=dict)


class FaultInjector:
    """Decides, call by call, whether an intercepted operation fails, and counts side effects.

    One per process when configured from the environment (:func:`injector_from_env`), so
    ``kill_after_side_effect`` counts across every port and platform of the process. Tests
    can build their own and pass it to ``Platform(settings, faults=...)``; ``kill`` replaces
    the SIGKILL (a test running in-process wants an exception, not its own death).
    """

    def __init__(self, config: FaultConfig, *, kill: Callable[[], None] = _sigkill) -> None:
        self.config = config
        self._kill = kill
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._rngs = [random.Random(f"{config.seed}:{i}:{r.op}") for i, r in enumerate(config.rules)]
        self._trace_fd: int | None = None

    # -- introspection -------------------------------------------------------------------------
    @property
    def side_effects(self) -> int:
        """Side effects attempted so far in this process."""
        return self._counters.side_effects

    def calls(self, op: str) -> int:
        """Intercepted calls of ``op`` (``"state.put"``) so far."""
        return self._counters.calls.get(op, 0)

    # -- wrapping ------------------------------------------------------------------------------------
    def methods_for(self, port: str) -> frozenset[str]:
        """The methods of ``port`` that calls must go through the injector for."""
        if port not in SIDE_EFFECTS:
            raise ConfigurationError(f"fault injection knows no port {port!r}; ports: {', '.join(PORTS)}")
        names = set(SIDE_EFFECTS[port]) if self.config.counts_side_effects else set()
        for rule in self.config.rules:
            rule_port, _, method = rule.op.partition(".")
            if rule.op == "*" or method == "*":
                if rule.op == "*" or rule_port == port:
                    names |= SIDE_EFFECTS[port]
            elif rule_port == port:
                names.add(method)
        return frozenset(names)

    def wrap(self, port: str, adapter: T, *, label: str = "") -> T:
        """``adapter`` behind a :class:`FaultProxy`, or ``adapter`` itself when nothing of ``port`` is
        intercepted. ``label`` prefixes the trace details (the bus name)."""
        names = self.methods_for(port)
        for rule in self.config.rules:
            method = rule.op.partition(".")[2]
            if rule.op.startswith(f"{port}.") and method != "*" and not callable(getattr(adapter, method, None)):
                raise ConfigurationError(f"{ENV_FAULTS}: {rule.op}: {type(adapter).__name__} has no method {method!r}")
        if not names:
            return adapter
        return cast(T, FaultProxy(self, port, adapter, names, label))

    # -- the call ------------------------------------------------------------------------------------
    def call(
        self,
        port: str,
        method: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        label: str = "",
    ) -> Any:
        """Run ``fn`` (the adapter's ``method``) with whatever faults the rules say."""
        op = f"{port}.{method}"
        cfg = self.config
        side_effect = method in SIDE_EFFECTS[port]
        fired: FaultRule | None = None
        with self._lock:
            n = self._counters.calls[op] = self._counters.calls.get(op, 0) + 1
            for rule, rng in zip(cfg.rules, self._rngs, strict=True):
                if not rule.matches(port, method):
                    continue
                # every p rule draws on every call, so one rule's sequence does not depend on the others
                hit = rng.random() < rule.p if rule.p is not None else n == rule.nth
                if hit and fired is None:
                    fired = rule
            seq = 0
            if side_effect:
                seq = self._counters.side_effects = self._counters.side_effects + 1
        detail = describe_call(label, args) if cfg.trace is not None else ""
        if seq and seq == cfg.kill_before_side_effect:
            self._die(seq, op, "kill-before", detail)
        if fired is not None and not fired.after:
            if fired.kill:
                self._die(seq, op, "kill-before", detail, why=f"rule {fired.op}, call {n}")
            self._trace(seq, op, "fault-before", detail)
            _log.warning("fault injection: error before call %d of %s (rule %s)", n, op, fired.op)
            raise InjectedFault(f"injected fault in {op} (call {n}, rule {fired.op})")
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            self._trace(seq, op, f"error:{type(e).__name__}", detail)
            if seq and seq == cfg.kill_after_side_effect:
                self._die(seq, op, "", detail)
            raise
        if fired is None:  # the common case
            killing = bool(seq) and seq == cfg.kill_after_side_effect
            self._trace(seq, op, "kill-after" if killing else "ok", detail)
            if killing:
                self._die(seq, op, "", detail)
            return result
        # a rule fires after the call: the operation happened, then ...
        if fired.kill:  # ... the process dies
            self._die(seq, op, "kill-after", detail, why=f"rule {fired.op}, call {n}")
        else:  # ... or the caller hears it failed
            self._trace(seq, op, "fault-after", detail)
        if seq and seq == cfg.kill_after_side_effect:
            self._die(seq, op, "", detail)
        _log.warning("fault injection: error after call %d of %s (rule %s)", n, op, fired.op)
        raise InjectedFault(
            f"injected fault in {op} (call {n}, rule {fired.op}): the operation succeeded, its response was lost"
        )

    def _die(self, seq: int, op: str, outcome: str, detail: str, *, why: str = "") -> None:
        """SIGKILL (or the test's stand-in); ``outcome`` is traced first unless empty (already traced)."""
        if outcome:
            self._trace(seq, op, outcome, detail)
        why = why or f"kill_*_side_effect={seq}"
        _log.warning("fault injection: SIGKILL at %s (side effect %d, %s)", op, seq, why)
        self._kill()

    def _trace(self, seq: int, op: str, outcome: str, detail: str) -> None:
        if not seq or self.config.trace is None:  # only side effects are traced
            return
        line = f"{seq}\t{os.getpid()}\t{op}\t{outcome}\t{detail}\n".encode()
        with self._lock:
            if self._trace_fd is None:
                self.config.trace.parent.mkdir(parents=True, exist_ok=True)
                self._trace_fd = os.open(self.config.trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._trace_fd, line)  # one write to an O_APPEND file: whole lines, even across processes

    def close(self) -> None:
        with self._lock:
            if self._trace_fd is not None:
                os.close(self._trace_fd)
                self._trace_fd = None


class FaultProxy:
    """An adapter seen through a :class:`FaultInjector`: the named methods go through it,
    everything else (attributes, local extras such as ``recover()``) is the adapter's own.

    ``isinstance`` sees the adapter's class; ``type()`` and :func:`unwrap` tell the proxy apart.
    """

    __slots__ = ("__wrapped__", "_fault_injector", "_fault_label", "_fault_methods", "_fault_port")

    def __init__(self, injector: FaultInjector, port: str, adapter: Any, methods: frozenset[str], label: str) -> None:
        object.__setattr__(self, "__wrapped__", adapter)
        object.__setattr__(self, "_fault_injector", injector)
        object.__setattr__(self, "_fault_port", port)
        object.__setattr__(self, "_fault_methods", methods)
        object.__setattr__(self, "_fault_label", label)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, StateStore) holds, as for the adapter
        return type(self.__wrapped__)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.__wrapped__, name)
        if name not in self._fault_methods or not callable(attr):
            return attr
        injector, port, label = self._fault_injector, self._fault_port, self._fault_label

        @functools.wraps(attr)
        def intercepted(*args: Any, **kwargs: Any) -> Any:
            return injector.call(port, name, attr, args, kwargs, label=label)

        return intercepted

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__wrapped__, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.__wrapped__, name)

    def __dir__(self) -> list[str]:
        return dir(self.__wrapped__)

    def __repr__(self) -> str:
        return f"<FaultProxy {self._fault_port} {sorted(self._fault_methods)} of {self.__wrapped__!r}>"


def unwrap(obj: T) -> T:
    """The adapter behind a :class:`FaultProxy`, or ``obj`` itself (local stand-ins of what AWS does
    on its own, such as S3 notifications, use the raw adapters)."""
    if type(obj) is FaultProxy:
        return cast(T, object.__getattribute__(obj, "__wrapped__"))
    return obj


# -- from the environment ----------------------------------------------------------------------------

_INJECTORS: dict[tuple[str, str], FaultInjector] = {}
_INJECTORS_LOCK = threading.Lock()


def injector_from_env(environ: Mapping[str, str] | None = None) -> FaultInjector | None:
    """The process's injector for ``DOCLLM_FAULTS`` / ``DOCLLM_FAULTS_TRACE``; ``None`` when both are
    unset or empty (fault injection off). The same settings give the same injector, so one
    process counts its side effects once whatever the number of platforms."""
    env = os.environ if environ is None else environ
    spec = env.get(ENV_FAULTS, "").strip()
    trace = env.get(ENV_TRACE, "").strip()
    if not spec and not trace:
        return None
    with _INJECTORS_LOCK:
        key = (spec, trace)
        if key not in _INJECTORS:
            _INJECTORS[key] = FaultInjector(parse_faults(spec, trace=trace or None))
        return _INJECTORS[key]


def reset_injectors() -> None:
    """Forget the injectors built from the environment: counters start again at zero."""
    with _INJECTORS_LOCK:
        for injector in _INJECTORS.values():
            injector.close()
        _INJECTORS.clear()


def job_fault_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What local job subprocesses get instead of the runtime's fault settings.

    A job builds its own platform in its own process; inheriting ``DOCLLM_FAULTS`` would make
    it count (and die at) its own side effects. Jobs get ``DOCLLM_JOB_FAULTS`` and
    ``DOCLLM_JOB_FAULTS_TRACE`` instead, which are unset unless a test asks. Empty when none of
    the four variables is set, so nothing changes when fault injection is off.
    """
    env = os.environ if environ is None else environ
    if not any(env.get(k) for k in (ENV_FAULTS, ENV_TRACE, ENV_JOB_FAULTS, ENV_JOB_TRACE)):
        return {}
    return {ENV_FAULTS: env.get(ENV_JOB_FAULTS, ""), ENV_TRACE: env.get(ENV_JOB_TRACE, "")}
