"""``alarms``: the template's alarms as the local platform evaluates them, with their state."""

from __future__ import annotations

from argparse import Namespace
from typing import TYPE_CHECKING, Any

from docllm.cli.common import Col, emit_json, line, lit, out, print_table, running_platform

if TYPE_CHECKING:
    from docllm.monitoring.alarms import AlarmDefinition, AlarmState


def cmd_alarms(args: Namespace) -> int:
    from docllm.monitoring.definitions import local_alarms
    from docllm.monitoring.evaluator import AlarmStore

    p, _ = running_platform(args)
    definitions = local_alarms(p)
    stored = {s.name: s for s in AlarmStore(p.data_dir / "alarms.db").all()}
    # The template's alarms first (in its order), each followed by its per-version instances.
    listed: list[tuple[AlarmDefinition, AlarmState | None]] = []
    for d in definitions.alarms:
        listed.append((d, stored[d.name].state if d.name in stored else None))
        listed.extend((s.definition, s.state) for s in stored.values() if s.parent == d.name)
    if args.json:
        emit_json(
            {
                "alarms": [_alarm_json(d, state) for d, state in listed],
                "skipped": [
                    {"logical_id": s.logical_id, "name": s.name, "reason": s.reason} for s in definitions.skipped
                ],
            }
        )
        return 0
    print_table(
        [Col("alarm", copy=True), "state", "since", "reason"],
        [
            (
                d.name,
                state.value if state else "INSUFFICIENT_DATA",
                state.timestamp.strftime("%Y-%m-%d %H:%M:%S") if state else "",
                state.reason if state else "Unchecked: Initial alarm creation",
            )
            for d, state in listed
        ],
    )
    if definitions.skipped:
        out.print(
            line(
                lit(len(definitions.skipped), "bold"),
                " alarm(s) of the template watch AWS metrics (AWS/SQS, AWS/Lambda…) and are not evaluated "
                "locally; docllm alarms --json lists them",
            )
        )
    return 0


def _alarm_json(d: AlarmDefinition, state: AlarmState | None) -> dict[str, Any]:
    return {
        "name": d.name,
        "parent": d.parent,
        "state": state.value if state else "INSUFFICIENT_DATA",
        "since": state.timestamp.isoformat() if state else None,
        "reason": state.reason if state else "Unchecked: Initial alarm creation",
        "reason_data": state.reason_data if state else None,
        "period": d.period,
        "evaluation_periods": d.evaluation_periods,
        "datapoints_to_alarm": d.m,
        "threshold": d.threshold,
        "comparison_operator": d.comparison_operator,
        "treat_missing_data": d.treat_missing_data,
        "metrics": d.configuration_metrics(),
    }
