"""Engine faults, injected on purpose: a **testing aid** for benchmarks and tests, never a product setting.

A model version can be made to misbehave the three ways a bad deployment shows up, so that the
alarms, the canary guardrails and the rollback can be exercised end to end (``bench/rollback``,
``tests/integration/serving/test_canary*.py``):

``errors``
    every completion answers HTTP 500 with an OpenAI error body (``/health`` and ``/v1/models``
    stay healthy: the engine starts, is deployed, and fails the traffic it takes);
``slow:SECONDS``
    every completion waits SECONDS before it is generated (a latency regression);
``ungrounded``
    every completion's text is replaced by :data:`UNGROUNDED_TEXT`, a fixed sentence full of
    factual tokens no documentation contains (an invented CLI command and flags, limits with units,
    an ARN): the grounding check flags every answer.

Set per engine with ``python -m docllm.serving.server ... --fault SPEC``, or per model version for
the engines ``docllm up`` starts with ``DOCLLM_ENGINE_FAULTS="VERSION=SPEC,VERSION2=SPEC"``
(read when an engine for that version starts). Unset, nothing changes and nothing is checked.

>>> parse_fault("slow:2.5")
EngineFault(kind='slow', seconds=2.5)
>>> parse_engine_faults("tiny-s3-v2=errors, tiny-s3-v3=slow:1")
{'tiny-s3-v2': EngineFault(kind='errors', seconds=0.0), 'tiny-s3-v3': EngineFault(kind='slow', seconds=1.0)}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

from docllm.exceptions import ConfigurationError

__all__ = ["ENV_ENGINE_FAULTS", "FAULT_KINDS", "UNGROUNDED_TEXT", "EngineFault", "parse_engine_faults", "parse_fault"]

ENV_ENGINE_FAULTS = "DOCLLM_ENGINE_FAULTS"
FaultKind = Literal["errors", "slow", "ungrounded"]
FAULT_KINDS: tuple[FaultKind, ...] = ("errors", "slow", "ungrounded")

#: What an ``ungrounded`` engine answers, whatever it was asked: every factual token in it (a CLI
#: command, flags, limits with units, an ARN, an API action) is invented, so no retrieved context
#: supports it.
UNGROUNDED_TEXT = (
    "Run aws s3api enable-quantum-sync --quantum-tier 9931 --flux-capacitor-mode hyperdrive on the bucket; "
    "each bucket then keeps 73191 zettabytes for 4477 ms, up to 8812 requests per second, under "
    "arn:aws:s3:::zq-vortex-4471 once PutBucketQuantumSync reports 6623 GiB."
)


@dataclass(frozen=True)
class EngineFault:
    """One fault: its kind and, for ``slow``, the delay per completion."""

    kind: FaultKind
    seconds: float = 0.0

    @property
    def spec(self) -> str:
        """The spec that parses back to this fault."""
        return f"slow:{self.seconds:g}" if self.kind == "slow" else self.kind


def parse_fault(spec: str) -> EngineFault:
    """``errors``, ``slow:SECONDS`` or ``ungrounded`` as an :class:`EngineFault`.

    >>> parse_fault("bogus")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    docllm.exceptions.ConfigurationError: engine fault 'bogus': ...
    """
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.strip()
    if kind not in FAULT_KINDS:
        raise ConfigurationError(f"engine fault {spec!r}: not one of errors, slow:SECONDS, ungrounded")
    if kind != "slow":
        if sep:
            raise ConfigurationError(f"engine fault {spec!r}: {kind} takes no argument")
        return EngineFault(cast(FaultKind, kind))
    try:
        seconds = float(arg)
    except ValueError:
        raise ConfigurationError(f"engine fault {spec!r}: write slow:SECONDS, e.g. slow:3") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"engine fault {spec!r}: SECONDS must be a positive number")
    return EngineFault("slow", seconds)


def parse_engine_faults(value: str) -> dict[str, EngineFault]:
    """``DOCLLM_ENGINE_FAULTS``: ``VERSION=SPEC`` items separated by commas (or semicolons)."""
    faults: dict[str, EngineFault] = {}
    for raw in value.replace(";", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        version, eq, spec = item.partition("=")
        if not eq or not version.strip():
            raise ConfigurationError(f"{ENV_ENGINE_FAULTS}: {item!r} is not VERSION=SPEC")
        faults[version.strip()] = parse_fault(spec)
    return faults
