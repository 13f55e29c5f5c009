"""CloudWatch metric alarms, evaluated the way CloudWatch documents it (pure: no I/O, no clock).

One :class:`AlarmDefinition` is one ``AWS::CloudWatch::Alarm`` (:meth:`AlarmDefinition.from_cfn`
reads its resolved properties): a single metric with a ``Statistic`` or an ``ExtendedStatistic``
(``pNN``), or metric math (``Metrics``: ``MetricStat`` entries and one expression that returns the
data). :func:`evaluate` turns raw samples into one datapoint per period, picks the datapoints the
alarm evaluates and decides its state; :func:`state_change_event` writes the transition as the
"CloudWatch Alarm State Change" event EventBridge delivers.

What CloudWatch documents, and how it is done here (AWS CloudWatch user guide, "Evaluating an
alarm" and "Configuring how CloudWatch alarms treat missing data"):

* **Periods** are aligned to multiples of ``Period`` since the epoch; a datapoint is the statistic
  of the raw values whose timestamps fall in its period. Only *closed* periods are evaluated here
  (CloudWatch too waits for a period's data; the local evaluator ticks more often than CloudWatch
  evaluates, so an open period would otherwise flap).
* **M out of N**: ``EvaluationPeriods`` (N) datapoints are evaluated; the alarm is ALARM when at
  least ``DatapointsToAlarm`` (M, default N) of them breach, else OK.
* **Evaluation range**: CloudWatch retrieves more periods than N (how many is not published; its
  documented example retrieves 5 for N = 3). Here the range is N + :data:`EXTRA_PERIODS`. With N
  or more real datapoints in the range the N most recent real ones are evaluated, however far
  back, and the missing-data setting plays no part. With fewer, the most recent missing periods
  fill in (as few as needed) and ``TreatMissingData`` decides: ``breaching`` / ``notBreaching``
  count them as breaching / not; ``missing`` and ``ignore`` do not count them: ALARM with M
  breaching real datapoints, OK with any non-breaching real one, otherwise ``ignore`` keeps the
  current state and ``missing`` goes to INSUFFICIENT_DATA, except when the oldest evaluated
  datapoint is a real breaching one (the documented ``X - - - -`` row: ALARM).
* **Percentiles** (``p50``, ``p99``, ``p99.9``) are computed from the raw values of the period by
  nearest rank: the value at rank ``ceil(p/100 * n)`` of the sorted values. CloudWatch computes
  percentiles from its own (approximate) sketches; nearest rank is exact on the values we hold and
  never invents a value that was not observed. As CloudWatch, no percentile when a value is
  negative. ``EvaluateLowSampleCountPercentile: ignore`` keeps the state while a period holds fewer
  than ``10 / (1 - p)`` samples (``10 / p`` under p50).
* **Metric math**: ids, numbers, ``+ - * /``, unary minus and ``FILL(id, number)``. A result is
  computed only where every operand has a datapoint (``FILL`` supplies one); a division by zero
  gives no datapoint. Anything else (``METRICS()``, ``ANOMALY_DETECTION_BAND``…) is refused with
  :class:`UnsupportedAlarmError`, as are the anomaly-band comparison operators.

>>> d = AlarmDefinition.from_cfn({"AlarmName": "a", "Namespace": "docllm", "MetricName": "Errors",
...     "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 0,
...     "ComparisonOperator": "GreaterThanThreshold"})
>>> evaluate(d, [Sample(60_500, 2.0)], now=120.0).value
'ALARM'
"""

from __future__ import annotations

import ast
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from docllm.events.envelope import BusEvent
from docllm.exceptions import ConfigurationError

StateValue = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
ComparisonOperator = Literal[
    "GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"
]
TreatMissingData = Literal["missing", "notBreaching", "breaching", "ignore"]

#: The statistics of ``Statistic`` (``ExtendedStatistic`` holds a percentile).
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
#: Periods beyond N that the evaluation range reaches back (CloudWatch's documented example: 5 for N = 3).
EXTRA_PERIODS = 2
#: Operators of CloudWatch anomaly-detection alarms: a band, not a static threshold.
ANOMALY_OPERATORS = ("LessThanLowerOrGreaterThanUpperThreshold", "LessThanLowerThreshold", "GreaterThanUpperThreshold")

_PERCENTILE = re.compile(r"^p(100|\d{1,2}(\.\d+)?)$")
_COMPARE: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}


class UnsupportedAlarmError(ConfigurationError):
    """An alarm uses something the local evaluator does not implement (it says what, and the alarm)."""


class SampleLike(Protocol):
    """One raw value put to a metric (``docllm.ports.metrics.MetricPoint`` is one)."""

    @property
    def timestamp_ms(self) -> int: ...

    @property
    def value(self) -> float: ...


@dataclass(frozen=True)
class Sample:
    """A raw value at a time (epoch milliseconds)."""

    timestamp_ms: int
    value: float


@dataclass(frozen=True)
class Datapoint:
    """The statistic of one period: ``timestamp_ms`` is the period's start."""

    timestamp_ms: int
    value: float
    sample_count: int


# -- the definition ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricId(_Model):
    """A metric: namespace, name and its exact dimension set (CloudWatch never aggregates across sets)."""

    namespace: str
    name: str
    dimensions: dict[str, str] = Field(default_factory=dict)


class MetricStat(_Model):
    metric: MetricId
    period: int
    stat: str
    unit: str | None = None


class MetricQuery(_Model):
    """One entry of an alarm's ``Metrics``: a ``MetricStat`` or an ``Expression``."""

    id: str
    metric_stat: MetricStat | None = None
    expression: str | None = None
    label: str | None = None
    return_data: bool = True
    period: int | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MetricQuery:
        if (self.metric_stat is None) == (self.expression is None):
            raise ValueError(f"metric {self.id!r}: give exactly one of MetricStat and Expression")
        return self


class AlarmDefinition(_Model):
    """An ``AWS::CloudWatch::Alarm`` (metric alarm) with its properties resolved."""

    name: str
    description: str = ""
    #: A single-metric alarm's metric and statistic (``Statistic`` or ``ExtendedStatistic``)…
    metric: MetricId | None = None
    statistic: str | None = None
    period: int
    unit: str | None = None
    #: …or metric math: MetricStat entries and exactly one returned expression (or metric).
    metrics: tuple[MetricQuery, ...] = ()
    evaluation_periods: int = Field(ge=1)
    datapoints_to_alarm: int | None = Field(default=None, ge=1)
    threshold: float
    comparison_operator: ComparisonOperator
    treat_missing_data: TreatMissingData = "missing"
    evaluate_low_sample_count_percentile: Literal["evaluate", "ignore"] | None = None
    #: The alarm this one is a per-version instance of (local platform only), else None.
    parent: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AlarmDefinition:
        if (self.metric is None) == (not self.metrics):
            raise ValueError(f"alarm {self.name}: give either a metric (MetricName) or Metrics, not both or neither")
        if self.metric is not None:
            if self.statistic is None:
                raise ValueError(f"alarm {self.name}: a Statistic or an ExtendedStatistic is required")
            _check_stat(self.name, self.statistic)
        else:
            returned = [q for q in self.metrics if q.return_data]
            if len(returned) != 1:
                raise ValueError(f"alarm {self.name}: exactly one entry of Metrics must have ReturnData true")
            for q in self.metrics:
                if q.metric_stat is not None:
                    _check_stat(self.name, q.metric_stat.stat)
                    if q.metric_stat.period != self.period:
                        raise ValueError(f"alarm {self.name}: every metric must use the same period")
            _MathProgram(self)  # refuses what it cannot compute, at load time
        if self.period not in (10, 30) and (self.period <= 0 or self.period % 60):
            raise ValueError(f"alarm {self.name}: Period must be 10, 30 or a multiple of 60 (got {self.period})")
        if self.datapoints_to_alarm is not None and self.datapoints_to_alarm > self.evaluation_periods:
            raise ValueError(f"alarm {self.name}: DatapointsToAlarm exceeds EvaluationPeriods")
        return self

    # -- derived values --------------------------------------------------------------------
    @property
    def m(self) -> int:
        """Datapoints to alarm (M)."""
        return self.datapoints_to_alarm or self.evaluation_periods

    @property
    def evaluation_range(self) -> int:
        """How many periods back datapoints are looked for."""
        return self.evaluation_periods + EXTRA_PERIODS

    @property
    def metric_ids(self) -> tuple[MetricId, ...]:
        """Every metric the alarm reads."""
        if self.metric is not None:
            return (self.metric,)
        return tuple(q.metric_stat.metric for q in self.metrics if q.metric_stat is not None)

    @property
    def high_resolution(self) -> bool:
        return self.period < 60

    def with_dimensions(self, extra: Mapping[str, str], *, name: str) -> AlarmDefinition:
        """This alarm on ``extra`` more dimensions of every metric, named ``name`` (its parent: this one)."""

        def widen(m: MetricId) -> MetricId:
            return m.model_copy(update={"dimensions": {**m.dimensions, **extra}})

        update: dict[str, Any] = {"name": name, "parent": self.name}
        if self.metric is not None:
            update["metric"] = widen(self.metric)
        else:
            update["metrics"] = tuple(
                q.model_copy(
                    update={"metric_stat": q.metric_stat.model_copy(update={"metric": widen(q.metric_stat.metric)})}
                )
                if q.metric_stat is not None
                else q
                for q in self.metrics
            )
        return self.model_copy(update=update)

    # -- CloudFormation --------------------------------------------------------------------
    @classmethod
    def from_cfn(cls, props: Mapping[str, Any], *, name: str | None = None) -> AlarmDefinition:
        """Read the (resolved) ``Properties`` of an ``AWS::CloudWatch::Alarm``.

        Raises
        ------
        UnsupportedAlarmError
            Anomaly-detection operators or expressions, ``ThresholdMetricId``, an expression outside
            the supported arithmetic, a statistic CloudWatch alarms do not take.
        """
        alarm = str(props.get("AlarmName") or name or "")
        if not alarm:
            raise UnsupportedAlarmError("an alarm without AlarmName (and no logical id given)")
        op = str(props.get("ComparisonOperator", ""))
        if op in ANOMALY_OPERATORS or "ThresholdMetricId" in props:
            raise UnsupportedAlarmError(
                f"alarm {alarm}: anomaly-detection band alarms ({op or 'ThresholdMetricId'}) are not evaluated "
                "locally; use a static threshold (GreaterThanThreshold, LessThanThreshold, …)"
            )
        if op not in _COMPARE:
            raise UnsupportedAlarmError(f"alarm {alarm}: unknown ComparisonOperator {op!r}")
        if "Threshold" not in props:
            raise UnsupportedAlarmError(f"alarm {alarm}: no Threshold")
        statistic = props.get("ExtendedStatistic") or props.get("Statistic")
        if props.get("ExtendedStatistic") and props.get("Statistic"):
            raise UnsupportedAlarmError(f"alarm {alarm}: give Statistic or ExtendedStatistic, not both")
        metrics: list[MetricQuery] = []
        period = props.get("Period")
        for q in props.get("Metrics") or []:
            stat = q.get("MetricStat")
            query = MetricQuery(
                id=str(q["Id"]),
                expression=q.get("Expression"),
                label=q.get("Label"),
                return_data=_bool(q.get("ReturnData", True)),
                period=int(q["Period"]) if q.get("Period") is not None else None,
                metric_stat=(
                    MetricStat(
                        metric=_metric_id(stat["Metric"]),
                        period=int(stat["Period"]),
                        stat=str(stat["Stat"]),
                        unit=stat.get("Unit"),
                    )
                    if stat
                    else None
                ),
            )
            metrics.append(query)
            if query.metric_stat is not None:
                period = period or query.metric_stat.period
            elif query.period is not None:
                period = period or query.period
        try:
            return cls(
                name=alarm,
                description=str(props.get("AlarmDescription") or ""),
                metric=(
                    _metric_id(
                        {
                            "Namespace": props.get("Namespace", ""),
                            "MetricName": props["MetricName"],
                            "Dimensions": props.get("Dimensions"),
                        }
                    )
                    if props.get("MetricName")
                    else None
                ),
                statistic=str(statistic) if statistic else None,
                period=int(period or 0),
                unit=props.get("Unit"),
                metrics=tuple(metrics),
                evaluation_periods=int(props.get("EvaluationPeriods", 0)),
                datapoints_to_alarm=int(props["DatapointsToAlarm"]) if props.get("DatapointsToAlarm") else None,
                threshold=float(props["Threshold"]),
                comparison_operator=op,
                treat_missing_data=props.get("TreatMissingData", "missing"),
                evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
            )
        except ValueError as e:  # pydantic's ValidationError is one
            raise UnsupportedAlarmError(f"alarm {alarm}: {e}") from e

    def configuration_metrics(self) -> list[dict[str, Any]]:
        """``detail.configuration.metrics`` of the state-change event, as CloudWatch writes it."""
        if self.metric is not None:
            return [
                {
                    # CloudWatch gives a single-metric alarm's metric a generated id; ours is stable per alarm.
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cloudwatch-alarm:{self.name}")),
                    "metricStat": _metric_stat_json(self.metric, self.period, str(self.statistic)),
                    "returnData": True,
                }
            ]
        out: list[dict[str, Any]] = []
        for q in self.metrics:
            entry: dict[str, Any] = {"id": q.id}
            if q.metric_stat is not None:
                entry["metricStat"] = _metric_stat_json(q.metric_stat.metric, q.metric_stat.period, q.metric_stat.stat)
            else:
                entry["expression"] = q.expression
            if q.label:
                entry["label"] = q.label
            entry["returnData"] = q.return_data
            out.append(entry)
        return out


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _metric_id(metric: Mapping[str, Any]) -> MetricId:
    dims = metric.get("Dimensions") or []
    return MetricId(
        namespace=str(metric.get("Namespace", "")),
        name=str(metric["MetricName"]),
        dimensions={str(d["Name"]): str(d["Value"]) for d in dims},
    )


def _metric_stat_json(metric: MetricId, period: int, stat: str) -> dict[str, Any]:
    return {
        "metric": {"dimensions": dict(metric.dimensions), "name": metric.name, "namespace": metric.namespace},
        "period": period,
        "stat": stat,
    }


def _check_stat(alarm: str, stat: str) -> None:
    if stat in STATISTICS or _PERCENTILE.match(stat):
        return
    raise UnsupportedAlarmError(
        f"alarm {alarm}: statistic {stat!r} is not supported locally (one of {', '.join(STATISTICS)}, or pNN)"
    )


# -- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the value at rank ``ceil(p/100 * n)`` of the sorted values.

    None for no values, or when a value is negative (CloudWatch has no percentiles then).

    >>> percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90)
    9
    >>> percentile([5.0], 99.9)
    5.0
    """
    if not values or min(values) < 0:
        return None
    ordered = sorted(values)
    # rounded first: 99.9 / 100 * 1000 is 999.0000000000001 in binary floating point, rank 999 all the same
    rank = max(1, math.ceil(round(p / 100 * len(ordered), 9)))
    return ordered[min(rank, len(ordered)) - 1]


def statistic(values: Sequence[float], stat: str) -> float | None:
    """One period's statistic of its raw ``values`` (None: no datapoint)."""
    if not values:
        return None
    if stat == "SampleCount":
        return float(len(values))
    if stat == "Sum":
        return float(sum(values))
    if stat == "Average":
        return float(sum(values)) / len(values)
    if stat == "Minimum":
        return float(min(values))
    if stat == "Maximum":
        return float(max(values))
    m = _PERCENTILE.match(stat)
    if m is None:
        raise UnsupportedAlarmError(f"statistic {stat!r} is not supported")
    return percentile(values, float(m.group(1)))


def aggregate(
    samples: Iterable[SampleLike], stat: str, period_s: int, start_ms: int, end_ms: int
) -> dict[int, Datapoint]:
    """One datapoint per period in ``[start_ms, end_ms)`` (period start -> datapoint); empty periods absent."""
    period_ms = period_s * 1000
    buckets: dict[int, list[float]] = {}
    for s in samples:
        if start_ms <= s.timestamp_ms < end_ms:
            buckets.setdefault(s.timestamp_ms - s.timestamp_ms % period_ms, []).append(float(s.value))
    out: dict[int, Datapoint] = {}
    for ts, values in buckets.items():
        value = statistic(values, stat)
        if value is not None:
            out[ts] = Datapoint(ts, value, len(values))
    return out


def low_sample_limit(stat: str) -> float:
    """Samples under which a percentile is "low sample count" (0 for other statistics)."""
    m = _PERCENTILE.match(stat)
    if m is None:
        return 0.0
    p = float(m.group(1)) / 100
    if p >= 1.0:
        return math.inf
    return 10 / (1 - p) if p >= 0.5 else (10 / p if p > 0 else math.inf)


# -- metric math --------------------------------------------------------------------------------

Series = dict[int, float]
_Node = Callable[[Mapping[str, Series], Sequence[int]], "Series | float"]


class _MathProgram:
    """The alarm's returned expression compiled from a safe subset of Python's grammar."""

    def __init__(self, alarm: AlarmDefinition) -> None:
        self.alarm = alarm
        self.queries = {q.id: q for q in alarm.metrics}
        returned = next(q for q in alarm.metrics if q.return_data)
        self._compiled: dict[str, _Node] = {}
        self.root = self._compile_id(returned.id, ())

    def _refuse(self, why: str) -> UnsupportedAlarmError:
        return UnsupportedAlarmError(
            f"alarm {self.alarm.name}: {why}; the local evaluator supports metric ids, numbers, + - * /, "
            "unary minus and FILL(id, number)"
        )

    def _compile_id(self, qid: str, stack: tuple[str, ...]) -> _Node:
        if qid in stack:
            raise self._refuse(f"expression ids refer to each other in a cycle ({' -> '.join((*stack, qid))})")
        if qid in self._compiled:
            return self._compiled[qid]
        q = self.queries.get(qid)
        if q is None:
            raise self._refuse(f"unknown id {qid!r} in an expression")
        if q.metric_stat is not None:
            node: _Node = lambda series, _slots: series.get(qid, {})  # noqa: E731
        else:
            text = str(q.expression)
            if "ANOMALY_DETECTION_BAND" in text.upper():
                raise UnsupportedAlarmError(
                    f"alarm {self.alarm.name}: anomaly-detection bands are not evaluated locally"
                )
            try:
                tree = ast.parse(text, mode="eval")
            except SyntaxError as e:
                raise self._refuse(f"cannot parse expression {text!r}") from e
            node = self._compile(tree.body, (*stack, qid))
        self._compiled[qid] = node
        return node

    def _compile(self, n: ast.AST, stack: tuple[str, ...]) -> _Node:
        if isinstance(n, ast.Constant) and isinstance(n.value, int | float) and not isinstance(n.value, bool):
            const = float(n.value)
            return lambda _series, _slots: const
        if isinstance(n, ast.Name):
            return self._compile_id(n.id, stack)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub | ast.UAdd):
            inner = self._compile(n.operand, stack)
            sign = -1.0 if isinstance(n.op, ast.USub) else 1.0
            return lambda series, slots: _apply(lambda a, _b: sign * a, inner(series, slots), 0.0)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
            left, right = self._compile(n.left, stack), self._compile(n.right, stack)
            fn = _BINOPS[type(n.op)]
            return lambda series, slots: _apply(fn, left(series, slots), right(series, slots))
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id.upper() == "FILL"
            and len(n.args) == 2
            and not n.keywords
        ):
            target = self._compile(n.args[0], stack)
            fill = n.args[1]
            negative = isinstance(fill, ast.UnaryOp) and isinstance(fill.op, ast.USub)
            literal = fill.operand if negative and isinstance(fill, ast.UnaryOp) else fill
            if not (isinstance(literal, ast.Constant) and isinstance(literal.value, int | float)):
                raise self._refuse("FILL takes a number as its value here (not REPEAT, LINEAR or an expression)")
            value = -float(literal.value) if negative else float(literal.value)

            def filled(series: Mapping[str, Series], slots: Sequence[int]) -> Series | float:
                got = target(series, slots)
                if isinstance(got, float):
                    return got
                return {ts: got.get(ts, value) for ts in slots}

            return filled
        raise self._refuse(f"{ast.unparse(n)!r} is not supported")

    def run(self, series: Mapping[str, Series], slots: Sequence[int]) -> Series:
        got = self.root(series, slots)
        if isinstance(got, float):  # a constant expression: one value in every period
            return {ts: got for ts in slots}
        wanted = set(slots)
        return {ts: v for ts, v in got.items() if ts in wanted}


def _div(a: float, b: float) -> float:
    return a / b  # ZeroDivisionError: no datapoint (see _apply)


_BINOPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: _div,
}


def _apply(fn: Callable[[float, float], float], a: Series | float, b: Series | float) -> Series | float:
    """``fn`` pointwise: a series with a number, or two series where both have a datapoint."""

    def one(x: float, y: float) -> float | None:
        try:
            return fn(x, y)
        except ZeroDivisionError:
            return None

    if isinstance(a, float) and isinstance(b, float):
        r = one(a, b)
        return r if r is not None else {}
    if isinstance(a, float):
        assert not isinstance(b, float)
        pairs = {ts: one(a, y) for ts, y in b.items()}
    elif isinstance(b, float):
        pairs = {ts: one(x, b) for ts, x in a.items()}
    else:
        pairs = {ts: one(x, b[ts]) for ts, x in a.items() if ts in b}
    return {ts: v for ts, v in pairs.items() if v is not None}


# -- evaluation ----------------------------------------------------------------------------------


class AlarmState(_Model):
    """An alarm's state as CloudWatch reports it (``reason_data`` is ``reasonData``, parsed)."""

    value: StateValue
    reason: str
    reason_data: dict[str, Any] | None = None
    timestamp: datetime

    @classmethod
    def initial(cls, now: float) -> AlarmState:
        """The state of a newly created alarm, before its first evaluation."""
        return cls(value="INSUFFICIENT_DATA", reason="Unchecked: Initial alarm creation", timestamp=_dt(now))

    def to_event(self) -> dict[str, Any]:
        """``detail.state`` / ``detail.previousState`` of the state-change event."""
        out: dict[str, Any] = {"value": self.value, "reason": self.reason}
        if self.reason_data is not None:
            out["reasonData"] = json.dumps(self.reason_data, separators=(",", ":"))
        out["timestamp"] = _cw_time(self.timestamp)
        return out


@dataclass(frozen=True)
class _Slot:
    timestamp_ms: int
    point: Datapoint | None
    breaching: bool  # for a missing slot: as treated (only meaningful when it is filled)


def period_slots(definition: AlarmDefinition, now: float) -> list[int]:
    """Start (ms) of each period of the evaluation range, oldest first: the closed periods before ``now``."""
    period_ms = definition.period * 1000
    now_ms = int(now * 1000)
    end = now_ms - now_ms % period_ms  # the open period starts here: not evaluated yet
    return [end - (definition.evaluation_range - i) * period_ms for i in range(definition.evaluation_range)]


def datapoints_of(
    definition: AlarmDefinition, samples: Sequence[SampleLike] | Mapping[str, Sequence[SampleLike]], now: float
) -> dict[int, Datapoint]:
    """The alarm's datapoints over its evaluation range (period start -> datapoint).

    ``samples``: the raw values of the metric (single-metric alarm), or of each ``MetricStat`` by
    its id (metric math; ``MetricStat`` ids missing from the mapping have no values).
    """
    slots = period_slots(definition, now)
    start, end = slots[0], slots[-1] + definition.period * 1000
    if definition.metric is not None:
        raw = samples if not isinstance(samples, Mapping) else next(iter(samples.values()), [])
        return aggregate(raw, str(definition.statistic), definition.period, start, end)
    if not isinstance(samples, Mapping):
        raise TypeError(f"alarm {definition.name} is metric math: pass samples by metric id")
    series: dict[str, Series] = {}
    counts: dict[int, int] = {}
    for q in definition.metrics:
        if q.metric_stat is None:
            continue
        points = aggregate(samples.get(q.id, []), q.metric_stat.stat, definition.period, start, end)
        series[q.id] = {ts: p.value for ts, p in points.items()}
        for ts, p in points.items():
            counts[ts] = max(counts.get(ts, 0), p.sample_count)
    values = _MathProgram(definition).run(series, slots)
    return {ts: Datapoint(ts, v, counts.get(ts, 0)) for ts, v in values.items() if math.isfinite(v)}


def evaluate(
    definition: AlarmDefinition,
    datapoints: Sequence[SampleLike] | Mapping[str, Sequence[SampleLike]],
    now: float,
    *,
    previous: AlarmState | None = None,
) -> AlarmState:
    """The alarm's state at ``now`` (epoch seconds) from the raw samples of its metric(s).

    ``datapoints`` are raw samples: a sequence for a single-metric alarm, a mapping of
    ``MetricStat`` id to samples for metric math. ``previous`` is the current state (a new alarm's
    :meth:`AlarmState.initial` when None): ``ignore`` keeps it, and an unchanged value keeps its
    reason and timestamp, as CloudWatch reports a state only when it changes.
    """
    previous = previous or AlarmState.initial(now)
    points = datapoints_of(definition, datapoints, now)
    slots = period_slots(definition, now)
    value, evaluated = _decide(definition, [points.get(ts) for ts in slots], slots, previous.value)
    if value == previous.value:
        return previous
    limit = low_sample_limit(definition.statistic or "")
    if definition.evaluate_low_sample_count_percentile == "ignore" and any(
        s.point is not None and s.point.sample_count < limit for s in evaluated
    ):
        return previous  # too few samples for this percentile: wait for enough data
    return AlarmState(
        value=value,
        reason=_reason(definition, value, previous.value, evaluated),
        reason_data=_reason_data(definition, evaluated, now),
        timestamp=_dt(now),
    )


def _decide(
    d: AlarmDefinition, points: list[Datapoint | None], slots: list[int], current: StateValue
) -> tuple[StateValue, list[_Slot]]:
    compare = _COMPARE[d.comparison_operator][0]
    n, m = d.evaluation_periods, d.m
    real = [_Slot(ts, p, compare(p.value, d.threshold)) for ts, p in zip(slots, points, strict=True) if p is not None]
    if len(real) >= n:  # enough real datapoints, however far back: missing-data treatment plays no part
        evaluated = real[-n:]
        return ("ALARM" if sum(s.breaching for s in evaluated) >= m else "OK"), evaluated
    treat = d.treat_missing_data
    missing = [ts for ts, p in zip(slots, points, strict=True) if p is None]
    fills = [_Slot(ts, None, treat == "breaching") for ts in missing[len(missing) - (n - len(real)) :]]
    evaluated = sorted(real + fills, key=lambda s: s.timestamp_ms)
    breaching = sum(s.breaching for s in real)
    if treat in ("breaching", "notBreaching"):
        total = breaching + (len(fills) if treat == "breaching" else 0)
        return ("ALARM" if total >= m else "OK"), evaluated
    if breaching >= m:
        return "ALARM", evaluated
    if any(not s.breaching for s in real):
        return "OK", evaluated
    if treat == "ignore":
        return current, evaluated
    # treat == "missing": only breaching real datapoints (too few), or none
    if evaluated[0].point is not None:
        return "ALARM", evaluated  # the oldest evaluated datapoint breaches (the documented "X - - - -" row)
    return "INSUFFICIENT_DATA", evaluated


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _num(v: float) -> str:
    return repr(float(v))


def _reason(d: AlarmDefinition, value: StateValue, previous: StateValue, evaluated: list[_Slot]) -> str:
    real = [s for s in evaluated if s.point is not None]
    fills = [s for s in evaluated if s.point is None]
    if value == "INSUFFICIENT_DATA":
        return f"Insufficient Data: {_plural(len(fills), 'datapoint')} {'was' if len(fills) == 1 else 'were'} unknown."
    phrase = _COMPARE[d.comparison_operator][1]
    alarm = value == "ALARM"
    shown = [s for s in real if s.breaching == alarm]
    minimum = d.m if alarm else d.evaluation_periods - d.m + 1
    transition = f"(minimum {_plural(minimum, 'datapoint')} for {previous} -> {value} transition)"
    treated = "Breaching" if d.treat_missing_data == "breaching" else "NonBreaching"
    counted_fills = d.treat_missing_data in ("breaching", "notBreaching") and fills
    if not real:
        return (
            f"Threshold Crossed: no datapoints were received for {_plural(len(fills), 'period')} and "
            f"{_plural(len(fills), 'missing datapoint')} {'was' if len(fills) == 1 else 'were'} "
            f"treated as [{treated}] {transition}."
        )
    listed = ", ".join(
        f"{_num(s.point.value)} ({_dt(s.timestamp_ms / 1000).strftime('%d/%m/%y %H:%M:%S')})"
        for s in reversed(shown)
        if s.point is not None
    )
    verb = "was" if len(shown) == 1 else "were"
    text = (
        f"Threshold Crossed: {len(shown)} out of the last {_plural(len(real), 'datapoint')} [{listed}] "
        f"{verb} {'' if alarm else 'not '}{phrase} the threshold ({_num(d.threshold)})"
    )
    if counted_fills:
        text += (
            f" and {_plural(len(fills), 'missing datapoint')} {'was' if len(fills) == 1 else 'were'}"
            f" treated as [{treated}]"
        )
    return f"{text} {transition}."


def _reason_data(d: AlarmDefinition, evaluated: list[_Slot], now: float) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": _cw_time(_dt(now)),
        "startDate": _cw_time(_dt(evaluated[0].timestamp_ms / 1000)) if evaluated else _cw_time(_dt(now)),
    }
    if d.metric is not None:
        data["statistic"] = d.statistic
    if d.unit:
        data["unit"] = d.unit
    data["period"] = d.period
    data["recentDatapoints"] = [s.point.value for s in evaluated if s.point is not None]
    data["threshold"] = float(d.threshold)
    data["evaluatedDatapoints"] = [
        {
            "timestamp": _cw_time(_dt(s.timestamp_ms / 1000)),
            "sampleCount": float(s.point.sample_count),
            "value": s.point.value,
        }
        if s.point is not None
        else {"timestamp": _cw_time(_dt(s.timestamp_ms / 1000))}
        for s in reversed(evaluated)
    ]
    return data


def _dt(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _cw_time(t: datetime) -> str:
    """CloudWatch's timestamps in events: ``2019-10-02T17:04:40.989+0000``."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


# -- the event ------------------------------------------------------------------------------------


def alarm_arn(name: str, *, account: str = "000000000000", region: str = "local") -> str:
    return f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"


def state_change_event(
    definition: AlarmDefinition,
    previous: AlarmState,
    current: AlarmState,
    *,
    account: str = "000000000000",
    region: str = "local",
) -> BusEvent:
    """The "CloudWatch Alarm State Change" event CloudWatch puts on the default bus for a transition."""
    configuration: dict[str, Any] = {}
    if definition.description:
        configuration["description"] = definition.description
    configuration["metrics"] = definition.configuration_metrics()
    return BusEvent(
        detail_type="CloudWatch Alarm State Change",
        source="aws.cloudwatch",
        account=account,
        region=region,
        time=current.timestamp.replace(microsecond=0),
        resources=[alarm_arn(definition.name, account=account, region=region)],
        detail={
            "alarmName": definition.name,
            "state": current.to_event(),
            "previousState": previous.to_event(),
            "configuration": configuration,
        },
    )


# -- the event's shape (what a consumer parses: the real samples and ours alike) ---------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EvaluatedDatapoint(_Wire):
    timestamp: str
    sample_count: float | None = Field(default=None, alias="sampleCount")
    value: float | None = None


class ReasonData(_Wire):
    """``reasonData`` of a threshold alarm's state (a JSON string in the event)."""

    version: str
    query_date: str = Field(alias="queryDate")
    start_date: str = Field(alias="startDate")
    statistic: str | None = None
    unit: str | None = None
    period: int
    recent_datapoints: list[float] = Field(alias="recentDatapoints")
    threshold: float
    evaluated_datapoints: list[EvaluatedDatapoint] | None = Field(default=None, alias="evaluatedDatapoints")


class StateDetail(_Wire):
    value: StateValue
    reason: str
    reason_data: str | None = Field(default=None, alias="reasonData")
    timestamp: str

    def parsed_reason_data(self) -> ReasonData | None:
        return ReasonData.model_validate_json(self.reason_data) if self.reason_data else None


class ConfigMetricSpec(_Wire):
    namespace: str
    name: str
    dimensions: dict[str, str] = Field(default_factory=dict)


class ConfigMetricStat(_Wire):
    metric: ConfigMetricSpec
    period: int
    stat: str


class ConfigMetric(_Wire):
    id: str
    metric_stat: ConfigMetricStat | None = Field(default=None, alias="metricStat")
    expression: str | None = None
    label: str | None = None
    return_data: bool = Field(alias="returnData")


class AlarmConfiguration(_Wire):
    description: str | None = None
    metrics: list[ConfigMetric]


class AlarmStateChangeDetail(_Wire):
    """``detail`` of a metric alarm's "CloudWatch Alarm State Change" (single metric or metric math)."""

    alarm_name: str = Field(alias="alarmName")
    state: StateDetail
    previous_state: StateDetail = Field(alias="previousState")
    configuration: AlarmConfiguration
