"""The alarms of ``template.yaml``, as the local platform evaluates them.

Every ``AWS::CloudWatch::Alarm`` is read through the runtime's template resolver with the local
parameters (``DeployTarget`` is ``local``; ``Stage`` is the platform's stage), so that an alarm
names exactly the metric the local platform puts: ``docllm-dev-serving-5xx-rate`` on
``{"Target": "local", "service": "docllm"}``. Alarms on metrics the local platform cannot measure
(``AWS/SQS``, ``AWS/Lambda``…: CloudWatch's own metrics of AWS services) are skipped and listed
with the reason; an alarm on the platform's namespace that the evaluator cannot compute is an error
(:class:`~docllm.monitoring.alarms.UnsupportedAlarmError`): it would otherwise never fire.

>>> defs = read_alarms("template.yaml", parameters={"Stage": "dev"})  # doctest: +SKIP
>>> [a.name for a in defs.alarms][:1]  # doctest: +SKIP
['docllm-dev-serving-p99-latency']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from docllm.monitoring.alarms import AlarmDefinition, UnsupportedAlarmError
from docllm.runtime.template import local_parameters, read_resources

if TYPE_CHECKING:
    from docllm.bootstrap import Platform

ALARM_TYPE = "AWS::CloudWatch::Alarm"
#: Alarms whose name starts ``docllm-<stage>-`` + this mean "the serving model is bad" (they roll back).
SERVING_INFIX = "serving-"


@dataclass(frozen=True)
class SkippedAlarm:
    """An alarm of the template the local platform does not evaluate, and why."""

    logical_id: str
    name: str
    reason: str


@dataclass(frozen=True)
class AlarmDefinitions:
    alarms: tuple[AlarmDefinition, ...]
    skipped: tuple[SkippedAlarm, ...]

    def named(self, name: str) -> AlarmDefinition | None:
        return next((a for a in self.alarms if a.name == name), None)


def is_serving_alarm(name: str) -> bool:
    """``docllm-<stage>-serving-…`` (its per-version instances ``…@<version>`` too)."""
    parts = name.split("-", 2)
    return len(parts) == 3 and parts[0] == "docllm" and parts[2].startswith(SERVING_INFIX)


def read_alarms(
    template: Path | str, *, parameters: Mapping[str, str] | None = None, namespace: str = "docllm"
) -> AlarmDefinitions:
    """Every alarm of ``template`` the local platform evaluates (metrics of ``namespace``), and the rest.

    Raises
    ------
    UnsupportedAlarmError
        An alarm on ``namespace`` uses something the local evaluator does not compute.
    """
    resources = read_resources(template, ALARM_TYPE, parameters={**local_parameters(), **(parameters or {})})
    alarms: list[AlarmDefinition] = []
    skipped: list[SkippedAlarm] = []
    for logical, props in resources.items():
        name = str(props.get("AlarmName") or logical)
        namespaces = _namespaces(props)
        foreign = sorted(ns for ns in namespaces if ns != namespace)
        if foreign:
            why = (
                f"{', '.join(foreign)} metrics are measured by AWS itself; the local platform has none"
                if all(ns.startswith("AWS/") for ns in foreign)
                else f"namespace {', '.join(foreign)} is not the platform's ({namespace})"
            )
            skipped.append(SkippedAlarm(logical, name, why))
            continue
        if "AlarmRule" in props:  # a composite alarm is another resource type; be explicit anyway
            raise UnsupportedAlarmError(f"alarm {name}: composite alarms are not evaluated locally")
        alarms.append(AlarmDefinition.from_cfn(props, name=logical))
    return AlarmDefinitions(tuple(alarms), tuple(skipped))


def _namespaces(props: Mapping[str, object]) -> set[str]:
    found: set[str] = set()
    if props.get("MetricName"):
        found.add(str(props.get("Namespace", "")))
    for q in props.get("Metrics") or []:  # type: ignore[attr-defined]
        stat = q.get("MetricStat") if isinstance(q, Mapping) else None
        if stat:
            found.add(str((stat.get("Metric") or {}).get("Namespace", "")))
    return found


def local_alarms(p: Platform) -> AlarmDefinitions:
    """The alarms the local platform ``p`` evaluates: its template, its stage, its metrics namespace."""
    from docllm.bootstrap import find_template

    template = getattr(p, "_template", None) or find_template()
    return read_alarms(
        template,
        parameters={"Stage": p.settings.stage, **local_parameters()},
        namespace=p.settings.metrics_namespace,
    )
