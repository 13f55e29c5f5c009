"""``incidents``, ``incident show``, ``incident close``: what the alarms on serving models set in motion.

The verbs for ``cli/main.py``'s command table are in :data:`COMMANDS`, as plain data (``main`` builds
``Command``/``arg`` from them; this module imports nothing from ``main``, so neither imports the other
at load time)::

    *(Command(path, func, help, tuple(arg(*flags, **kw) for flags, kw in args))
      for path, func, help, args in incident_cmds.COMMANDS)
"""

from __future__ import annotations

import getpass
from argparse import Namespace
from typing import Any

from docllm.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    CliError,
    Col,
    emit_json,
    float_range,
    line,
    lit,
    out,
    print_table,
    running_platform,
)

_JSON: tuple[tuple[str, ...], dict[str, Any]] = (
    ("--json",),
    {"action": "store_true", "help": 'machine-readable JSON on stdout (errors too: {"error": ...})'},
)

#: (path, "module:function", help, ((flags...), argparse kwargs)...) of each verb.
COMMANDS: tuple[tuple[tuple[str, ...], str, str, tuple[tuple[tuple[str, ...], dict[str, Any]], ...]], ...] = (
    (
        ("incidents",),
        "incident_cmds:cmd_incidents",
        "incidents opened by alarms on serving models: what was rolled back, to what, and whether it is closed",
        (
            (("--open",), {"action": "store_true", "help": "only the incidents not closed yet"}),
            _JSON,
        ),
    ),
    (
        ("incident", "show"),
        "incident_cmds:cmd_incident_show",
        "one incident: its alarms and their datapoints, each step and its verification, the versions' reports",
        (
            (("incident_id",), {"help": "incident id (docllm incidents)"}),
            _JSON,
        ),
    ),
    (
        ("incident", "close"),
        "incident_cmds:cmd_incident_close",
        "close an incident with its root cause, found after analysis",
        (
            (("incident_id",), {"help": "incident id (docllm incidents)"}),
            (("--cause",), {"required": True, "help": "the root cause, in a sentence or two (kept on the incident)"}),
            (
                ("--closer",),
                {
                    "help": "on whose behalf you close it (recorded beside your identity, local:<OS user>, "
                    "which is always the closer of record)"
                },
            ),
            (
                ("--timeout",),
                {
                    "type": float_range(0, lo_open=True),
                    "default": 60.0,
                    "help": "seconds to wait for the incident to close (default: %(default)s)",
                },
            ),
            _JSON,
        ),
    ),
)


def _incident(p: Any, incident_id: str) -> Any:
    from docllm.service_layer.rollback import load_incident

    incident = load_incident(p, incident_id)
    if incident is None:
        raise CliError(f"no incident {incident_id!r}: see docllm incidents", EXIT_NOT_FOUND)
    return incident


def cmd_incidents(args: Namespace) -> int:
    from docllm.service_layer.rollback import incidents

    p, _ = running_platform(args)
    found = [i for i in incidents(p) if not args.open or i.status == "open"]
    if args.json:
        emit_json([i.model_dump(mode="json") for i in found])
        return 0
    print_table(
        [
            Col("incident", copy=True),
            "opened",
            "status",
            "severity",
            "target",
            Col("bad version", copy=True),
            Col("restored", copy=True),
            "done",
            "alarm",
        ],
        [
            (
                i.incident_id,
                i.opened_at[:19],
                i.status,
                i.severity,
                i.target,
                i.bad_version,
                i.restored_version or "",
                _progress(i),
                i.alarm_name,
            )
            for i in found
        ],
    )
    return 0


def _progress(incident: Any) -> str:
    if incident.stale:
        return "stale"
    if incident.superseded:
        return "superseded"
    steps = incident.steps
    return f"{sum(1 for s in steps if s in incident.steps_done)}/{len(steps)}" if steps else "-"


def cmd_incident_show(args: Namespace) -> int:
    p, _ = running_platform(args)
    incident = _incident(p, args.incident_id)
    if args.json:
        emit_json(incident.model_dump(mode="json"))
        return 0
    i = incident
    out.print(
        line("incident ", lit(i.incident_id, "bold"), "  ", lit(i.status, "bold"), "  severity ", lit(i.severity))
    )
    out.print(line(lit(i.summary)))
    out.print(
        line(
            "target ",
            lit(i.target),
            "  bad ",
            lit(i.bad_version, "bold"),
            "  restored ",
            lit(i.restored_version or "none", "bold"),
            "  action ",
            lit(i.action),
        )
    )
    if i.verification is not None:
        verdict = "verified" if i.verification.get("ok") and i.verification.get("observed") else "NOT verified"
        out.print(line("verification ", lit(verdict, "bold"), " ", lit(i.verification.get("at", ""))))
    for version, links in i.links.items():
        out.print(line("version ", lit(version, "bold")))
        for name in ("html_uri", "report_uri", "manifest_uri", "export_uri"):
            value = getattr(links, name)
            if value:
                out.print(line("  ", lit(name.removesuffix("_uri")), " ", lit(value)))
    out.print(line(lit("timeline", "bold")))
    for e in i.timeline:
        out.print(line("  ", lit(e.at[:23], "dim"), " ", lit(e.kind, "bold"), " ", lit(e.summary)))
        if e.alarm is not None and e.alarm.datapoints:
            points = ", ".join(f"{v:.4g}" for v in e.alarm.datapoints)
            limit = f" (threshold {e.alarm.threshold:.4g})" if e.alarm.threshold is not None else ""
            out.print(line("      datapoints ", lit(points), lit(limit)))
    if i.status == "closed":
        out.print(line("closed by ", lit(i.closed_by or ""), " at ", lit(i.closed_at or ""), ": ", lit(i.cause or "")))
    return 0


def cmd_incident_close(args: Namespace) -> int:
    from docllm.cli.pipeline_cmds import _failure, _last_seq, _wait_for
    from docllm.events.contracts import IncidentCloseRequested, to_bus

    p, _ = running_platform(args)
    incident = _incident(p, args.incident_id)
    if incident.status == "closed":
        raise CliError(
            f"incident {incident.incident_id} was closed by {incident.closed_by} at {incident.closed_at}", EXIT_FAILED
        )
    # The local platform's one identity is the OS user who owns the data directory (as for reviews);
    # --closer only says on whose behalf.
    closer = f"local:{getpass.getuser()}" + (f" (for {args.closer})" if args.closer else "")
    request = IncidentCloseRequested(incident_id=incident.incident_id, cause=args.cause, closed_by=closer)
    seq = _last_seq(p)
    p.bus.publish([to_bus(request)])
    body = _wait_for(p, seq, request.request_id, {"Incident Closed"}, timeout_s=args.timeout, show=not args.json)
    if body is None:
        raise CliError(f"timed out after {args.timeout:.0f}s; see docllm status", EXIT_FAILED)
    if body.get("detail-type") != "Incident Closed":
        raise CliError(_failure(body), EXIT_FAILED)
    if args.json:
        emit_json(body["detail"])
    else:
        d: dict[str, Any] = body["detail"]
        out.print(line("incident ", lit(d["incident_id"], "bold"), " closed by ", lit(d["closed_by"])))
        out.print(line("  cause ", lit(d["cause"])))
    return 0
