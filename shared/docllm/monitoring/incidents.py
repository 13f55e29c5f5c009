"""Incidents: what an alarm on a serving model version set in motion, kept for root-cause analysis.

Pure (pydantic and the standard library): the rollback stage writes incidents, ``docllm incidents``
reads them, and both go through this module.

How an incident is stored
-------------------------
In the state store's ``incidents`` partition, as one *head* item (sort key: the incident id) that is
written once and never rewritten, and *entries* under ``<id>#<key>`` that are only ever added:
each alarm event (``alarm#<digest of name, state time and value>``), each step of the rollback
(``step#<name>``), notes (``note#<time>``) and the closing (``closed``). Every entry is written
``if_absent``, so a redelivered alarm or a step retried after a crash adds nothing twice, and two
writers (two alarms at once) never overwrite each other: there is no read-modify-write anywhere.
:func:`assemble` rebuilds the :class:`Incident` from the items.

>>> head = IncidentHead(incident_id="i1", target="local", family="tiny", bad_version="v2",
...     restored_version="v1", action="redeploy", severity="warning", alarm_name="docllm-dev-serving-5xx-rate",
...     opened_at="2025-01-01T00:00:00.000+00:00", summary="5xx on v2")
>>> step = TimelineEntry(at="2025-01-01T00:00:01.000+00:00", kind="redeploy", summary="v1 deployed", step="redeploy")
>>> incident = assemble([(head.incident_id, head.model_dump(mode="json")), ("i1#step#redeploy", step.model_dump())])
>>> incident.status, incident.steps_done, incident.next_step
('open', ['redeploy'], 'verify')
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

INCIDENTS_PK: Final = "incidents"

Severity = Literal["info", "warning", "page"]
"""``info``: recorded only (a stale alarm); ``warning``: handled automatically (rolled back);
``page``: a person must act now (nothing to roll back to, or the rollback did not take effect)."""
SEVERITIES: Final[tuple[Severity, ...]] = ("info", "warning", "page")

Step = Literal["redeploy", "verify", "registry", "notify", "announce"]
"""The rollback's steps, in order: deploy the restored version (or drop the bad canary), see the target
serve it, mark the bad version RolledBack in the registry, notify, announce "Model Rolled Back"."""
STEPS: Final[tuple[Step, ...]] = ("redeploy", "verify", "registry", "notify", "announce")

Action = Literal["redeploy", "abort_canary", "none"]
"""What the incident does about the bad version: deploy the restored version again, drop the bad
canary (the stable version keeps serving), or nothing (no version to roll back to, or a stale alarm)."""

AlarmValue = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]

#: The alarms whose ALARM means "the serving model is bad" (template.yaml: docllm-<stage>-serving-<kind>),
#: optionally naming the version (the local evaluator's per-version instances: ``<name>@<version>``).
_SERVING_ALARM = re.compile(r"^docllm-(?P<stage>[A-Za-z0-9-]+?)-serving-(?P<kind>[A-Za-z0-9-]+)(@(?P<version>.+))?$")


def steps_of(action: Action, *, stale: bool = False) -> tuple[Step, ...]:
    """The steps an incident takes: all of them for a rollback, a (loud) notification when there is
    nothing to roll back to, none for a stale alarm (recorded only).

    >>> steps_of("none"), steps_of("none", stale=True)
    (('notify',), ())
    """
    if stale:
        return ()
    return ("notify",) if action == "none" else STEPS


class ServingAlarm(BaseModel):
    """The parts of a serving alarm's name."""

    stage: str
    kind: str
    version: str | None = None


def parse_serving_alarm(name: str, stage: str) -> ServingAlarm | None:
    """The serving alarm ``name`` names in ``stage``; ``None`` for any other alarm.

    >>> parse_serving_alarm("docllm-dev-serving-5xx-rate@tiny-2025-0001", "dev")
    ServingAlarm(stage='dev', kind='5xx-rate', version='tiny-2025-0001')
    >>> parse_serving_alarm("docllm-dev-drift-oov-rate", "dev"), parse_serving_alarm("docllm-prod-serving-x", "dev")
    (None, None)
    """
    m = _SERVING_ALARM.match(name)
    if m is None or m["stage"] != stage:
        return None
    return ServingAlarm(stage=stage, kind=m["kind"], version=m["version"] or None)


def alarm_dimension(configuration: Mapping[str, Any], name: str) -> list[str]:
    """The distinct values of dimension ``name`` in an alarm's metrics (a metric-math alarm has several
    metrics, an expression none), in order of appearance.

    >>> local = {"Target": "local", "service": "docllm"}
    >>> alarm_dimension({"metrics": [{"id": "e1", "expression": "m1/m2"},
    ...     {"id": "m1", "metricStat": {"metric": {"dimensions": local}}},
    ...     {"id": "m2", "metricStat": {"metric": {"dimensions": local}}}]}, "Target")
    ['local']
    """
    found: list[str] = []
    for metric in configuration.get("metrics") or []:
        if not isinstance(metric, Mapping):
            continue
        dims = ((metric.get("metricStat") or {}).get("metric") or {}).get("dimensions") or {}
        value = dims.get(name) if isinstance(dims, Mapping) else None
        if isinstance(value, str) and value not in found:
            found.append(value)
    return found


def parse_time(text: str) -> datetime:
    """A time as AWS and docllm write them (``2019-10-02T17:04:40.989+0000``, ``...Z``, ``+00:00``), in UTC.

    >>> parse_time("2019-10-02T17:04:40.989+0000").isoformat()
    '2019-10-02T17:04:40.989000+00:00'
    """
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    value = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value)
    t = datetime.fromisoformat(value)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class AlarmRecord(BaseModel):
    """One alarm state change, as the incident keeps it: the alarm, its state, and the metrics around it
    (the datapoints CloudWatch evaluated, from the state's ``reasonData``)."""

    name: str
    state: AlarmValue
    timestamp: str = Field(description="the state's timestamp, as the event sent it")
    reason: str | None = None
    event_id: str | None = None
    datapoints: list[float] = Field(default_factory=list, description="recentDatapoints, oldest first")
    window_start: str | None = Field(default=None, description="the first datapoint's period start (startDate)")
    period_s: int | None = None
    threshold: float | None = None
    metrics: list[dict[str, Any]] = Field(default_factory=list, description="what the alarm watches")


def alarm_record(detail: Mapping[str, Any], *, event_id: str | None = None) -> AlarmRecord:
    """The :class:`AlarmRecord` of a "CloudWatch Alarm State Change" detail (``reasonData`` is a JSON
    string; one that does not parse leaves the datapoints empty)."""
    state = detail.get("state") or {}
    data: dict[str, Any] = {}
    if isinstance(state.get("reasonData"), str):
        try:
            loaded = json.loads(state["reasonData"])
            data = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            data = {}
    points = [float(v) for v in data.get("recentDatapoints") or [] if isinstance(v, int | float)]
    threshold = data.get("threshold")
    metrics: list[dict[str, Any]] = []
    for m in (detail.get("configuration") or {}).get("metrics") or []:
        if isinstance(m, Mapping):
            stat = m.get("metricStat") or {}
            metric = stat.get("metric") or {}
            metrics.append(
                {
                    k: v
                    for k, v in {
                        "id": m.get("id"),
                        "expression": m.get("expression"),
                        "namespace": metric.get("namespace"),
                        "name": metric.get("name"),
                        "dimensions": metric.get("dimensions"),
                        "stat": stat.get("stat"),
                        "period": stat.get("period"),
                    }.items()
                    if v is not None
                }
            )
    return AlarmRecord(
        name=str(detail.get("alarmName", "")),
        state=state.get("value", "INSUFFICIENT_DATA"),
        timestamp=str(state.get("timestamp", "")),
        reason=state.get("reason"),
        event_id=event_id,
        datapoints=points,
        window_start=data.get("startDate"),
        period_s=int(data["period"]) if isinstance(data.get("period"), int | float) else None,
        threshold=float(threshold) if isinstance(threshold, int | float) else None,
        metrics=metrics,
    )


class TimelineEntry(BaseModel):
    """One thing that happened: an alarm, a step of the rollback, a note, the closing."""

    at: str
    kind: str = Field(description="alarm, alarm-recovered, stale, a step's name, note, escalated, closed, …")
    summary: str = Field(description="one line for a person")
    step: Step | None = Field(default=None, description="the step this entry completes")
    severity: Severity | None = Field(default=None, description="the incident's severity from here on, if raised")
    alarm: AlarmRecord | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class VersionLinks(BaseModel):
    """Where to look at a version: its export, latest evaluation report and newest compliance manifest."""

    model_version: str
    export_uri: str | None = None
    evaluation_id: str | None = None
    report_uri: str | None = None
    html_uri: str | None = None
    manifest_uri: str | None = None
    manifest_sha256: str | None = None


class IncidentHead(BaseModel):
    """What an incident is about, fixed when it opens."""

    incident_id: str
    target: str
    family: str | None = None
    bad_version: str
    restored_version: str | None = None
    action: Action
    stale: bool = Field(default=False, description="the target changed after the alarm: recorded, nothing done")
    severity: Severity
    alarm_name: str = Field(description="the alarm that opened it")
    opened_at: str
    summary: str
    bad_deployment: dict[str, Any] = Field(default_factory=dict, description="the bad version's deployment")
    links: dict[str, VersionLinks] = Field(default_factory=dict, description="per version involved")


class Incident(IncidentHead):
    """An incident as ``docllm incident show`` presents it: the head and everything added since."""

    status: Literal["open", "closed"] = "open"
    alarms: list[AlarmRecord] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    steps_done: list[Step] = Field(default_factory=list)
    verification: dict[str, Any] | None = None
    superseded: bool = Field(default=False, description="someone deployed something else before the rollback")
    cause: str | None = None
    closed_by: str | None = None
    closed_at: str | None = None

    @property
    def steps(self) -> tuple[Step, ...]:
        """The steps this incident takes (those done before it was superseded stay done)."""
        if self.superseded:
            return tuple(s for s in steps_of(self.action, stale=self.stale) if s in self.steps_done)
        return steps_of(self.action, stale=self.stale)

    @property
    def next_step(self) -> Step | None:
        """The first step of :attr:`steps` not done yet (``None``: nothing left to do)."""
        return next((s for s in self.steps if s not in self.steps_done), None)


def incident_id(target: str, bad_version: str, deployment: str) -> str:
    """The incident of one bad deployment: the same for every alarm about it and every redelivery,
    so it rolls back once; a later deployment of the same version (re-approved, deployed again) that
    alarms opens a new one.

    >>> incident_id("local", "v2", "d1") == incident_id("local", "v2", "d1") != incident_id("local", "v2", "d2")
    True
    """
    return hashlib.sha256(f"{target}\x00{bad_version}\x00{deployment}".encode()).hexdigest()[:16]


# -- storage keys ---------------------------------------------------------------------------------------


def alarm_key(incident: str, alarm: AlarmRecord) -> str:
    """The entry of one alarm state change: a redelivered alarm event finds its entry there."""
    digest = hashlib.sha256(f"{alarm.name}\x00{alarm.timestamp}\x00{alarm.state}".encode()).hexdigest()[:16]
    return f"{incident}#alarm#{digest}"


def step_key(incident: str, step: Step) -> str:
    return f"{incident}#step#{step}"


def note_key(incident: str, stamp_ns: int) -> str:
    return f"{incident}#note#{stamp_ns:020d}"


def closed_key(incident: str) -> str:
    return f"{incident}#closed"


# -- reading ----------------------------------------------------------------------------------------------


def group(items: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, list[tuple[str, Mapping[str, Any]]]]:
    """The items of the ``incidents`` partition grouped by incident id."""
    out: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for sk, item in items:
        out.setdefault(sk.split("#", 1)[0], []).append((sk, item))
    return out


def assemble(items: Iterable[tuple[str, Mapping[str, Any]]]) -> Incident:
    """The :class:`Incident` of one incident's items (its head and its entries).

    Raises
    ------
    KeyError
        The items hold no head (an incident that was never opened).
    """
    head: Mapping[str, Any] | None = None
    entries: list[TimelineEntry] = []
    for sk, item in items:
        if "#" not in sk:
            head = item
        else:
            entries.append(TimelineEntry.model_validate(item))
    if head is None:
        raise KeyError("no incident head")
    incident = Incident.model_validate(dict(head))
    # Steps of one moment keep their order (times are the writers' clocks, possibly equal).
    entries.sort(key=lambda e: (_sortable(e.at), STEPS.index(e.step) if e.step else -1, e.kind))
    incident.timeline = entries
    incident.alarms = [e.alarm for e in entries if e.alarm is not None]
    incident.steps_done = [e.step for e in entries if e.step is not None]
    for e in entries:
        if e.severity is not None and SEVERITIES.index(e.severity) > SEVERITIES.index(incident.severity):
            incident.severity = e.severity
        if e.step == "verify" or e.kind == "verification-failed":
            incident.verification = {"ok": e.step == "verify", "at": e.at, **e.detail}
        if e.kind == "superseded":
            incident.superseded = True
        if e.kind == "closed":
            incident.status = "closed"
            incident.cause = e.detail.get("cause")
            incident.closed_by = e.detail.get("closed_by")
            incident.closed_at = e.at
    return incident


def assemble_all(items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Incident]:
    """Every incident of the partition, newest first (groups without a head, half-written, are left out)."""
    out = []
    for grouped in group(items).values():
        try:
            out.append(assemble(grouped))
        except KeyError:
            continue
    return sorted(out, key=lambda i: _sortable(i.opened_at), reverse=True)


def _sortable(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


__all__ = [
    "INCIDENTS_PK",
    "STEPS",
    "Action",
    "AlarmRecord",
    "Incident",
    "IncidentHead",
    "ServingAlarm",
    "Severity",
    "Step",
    "TimelineEntry",
    "VersionLinks",
    "alarm_dimension",
    "alarm_key",
    "alarm_record",
    "assemble",
    "assemble_all",
    "closed_key",
    "group",
    "incident_id",
    "note_key",
    "parse_serving_alarm",
    "parse_time",
    "step_key",
    "steps_of",
]
