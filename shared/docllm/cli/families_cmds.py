"""``families`` and ``pipeline run|status|cancel``: the model families and their continuous training
(docs/families.md, docs/pipelines.md)."""

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
    family_name,
    float_range,
    line,
    lit,
    out,
    print_table,
    running_platform,
)

_JSON = (("--json",), {"action": "store_true", "help": 'machine-readable JSON on stdout (errors too: {"error": ...})'})
_FAMILY = (("family",), {"type": family_name, "help": "model family (docllm families)"})


def _timeout(default: float, what: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    return (
        ("--timeout",),
        {
            "type": float_range(0, lo_open=True),
            "default": default,
            "help": f"seconds to wait {what} (default: %(default)s)",
        },
    )


#: The verbs, as plain data for ``docllm.cli.main`` (``_plugged_commands``): path, "module:function", help,
#: each argument's flags and argparse keywords, and what the verb needs of --data-dir ("none": nothing).
COMMANDS: tuple[tuple[Any, ...], ...] = (
    (
        ("families",),
        "families_cmds:cmd_families",
        "the model families: method, data filter, budget, retrain policy, deploy targets, gate rules; "
        "the families file's version",
        (_JSON,),
        "none",
    ),
    (
        ("pipeline", "run"),
        "families_cmds:cmd_pipeline_run",
        "run a family's pipeline now, whatever its debounce (a run in progress is superseded: its job stopped)",
        (
            _FAMILY,
            (("--wait",), {"action": "store_true", "help": "wait until the run ends (deployed, decided, failed)"}),
            _timeout(3600, "(for the start; with --wait for the end)"),
            _JSON,
        ),
    ),
    (
        ("pipeline", "status"),
        "families_cmds:cmd_pipeline_status",
        "each family's stage, stale reasons, next eligible and scheduled run, running job, last run",
        (_JSON,),
    ),
    (
        ("pipeline", "cancel"),
        "families_cmds:cmd_pipeline_cancel",
        "cancel a family's run in progress: its job stopped, nothing of it registered",
        (_FAMILY, _timeout(120, "for the cancellation"), _JSON),
    ),
)


def cmd_families(args: Namespace) -> int:
    from docllm.registry.rules import load_gate_rules
    from docllm.training.families import config_version, families_text, load_families

    text, source = families_text()
    families = load_families()
    rows = []
    for fam in families.values():
        data = fam.model_dump(mode="json")
        data["config_sha256"] = fam.config_sha256
        data["gate_rules"] = [r.model_dump(mode="json", exclude_none=True) for r in load_gate_rules(fam.name).rules]
        rows.append(data)
    if args.json:
        emit_json({"version": config_version(text), "source": source, "families": rows})
        return 0
    out.print(line("families ", lit(config_version(text), "bold"), " from ", lit(source)))
    print_table(
        ["family", "method", "model", "data", "budget", "retrain", "deploy"],
        [
            (
                fam.name,
                fam.method,
                f"{fam.preset} {fam.variant}" + (" +" + ",".join(fam.model) if fam.model else ""),
                _data_filter(fam.services, fam.paths, fam.languages),
                ", ".join(
                    f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:g}"
                    for k, v in fam.budget.model_dump(exclude_none=True).items()
                ),
                _retrain(fam.retrain),
                ",".join(fam.deploy) or "never",
            )
            for fam in families.values()
        ],
    )
    return 0


def _data_filter(services: list[str], paths: list[str], languages: list[str]) -> str:
    parts = [",".join(services) or "all services"]
    if paths:
        parts.append("paths " + ",".join(paths))
    if languages:
        parts.append("languages " + ",".join(languages))
    return "; ".join(parts)


def _retrain(policy: Any) -> str:
    if not policy.on_change:
        return "on request" + (f"; {policy.schedule}" if policy.schedule else "")
    tokens = f" or {policy.min_tokens} tokens" if policy.min_tokens else ""
    text = (
        f"≥{policy.min_documents} docs{tokens}, settle {policy.settle_minutes:g} min, "
        f"every ≥{policy.min_interval_hours:g} h"
    )
    return text + (f"; {policy.schedule}" if policy.schedule else "")


def cmd_pipeline_run(args: Namespace) -> int:
    from docllm.cli.pipeline_cmds import _failure, _last_seq, _wait_for
    from docllm.events.contracts import PipelineRunRequested, to_bus

    p, _ = running_platform(args)
    seq = _last_seq(p)
    request = PipelineRunRequested(family=args.family, requested_by=getpass.getuser())
    p.bus.publish([to_bus(request)])
    wanted = {"Pipeline Run Ended"} if args.wait else {"Pipeline Run Started"}
    body = _wait_for(p, seq, request.request_id, wanted, timeout_s=args.timeout, show=not args.json)
    if body is None:
        raise CliError(f"timed out after {args.timeout:.0f}s; see docllm pipeline status", EXIT_FAILED)
    if body.get("detail-type") not in wanted:
        raise CliError(_failure(body), EXIT_FAILED)
    d = body["detail"]
    if args.json:
        emit_json(d)
    elif args.wait:
        out.print(line("run ", lit(d["run_id"], "bold"), f" of {d['family']} ended {d['state']}: ", lit(d["reason"])))
    else:
        superseded = f" (superseded {d['supersedes']})" if d.get("supersedes") else ""
        out.print(line("run ", lit(d["run_id"], "bold"), f" of {d['family']} started{superseded}: ", lit(d["reason"])))
    if args.wait and d.get("state") in ("failed", "cancelled", "superseded"):
        return EXIT_FAILED
    return 0


def cmd_pipeline_cancel(args: Namespace) -> int:
    from docllm.cli.pipeline_cmds import _failure, _last_seq, _wait_for
    from docllm.events.contracts import PipelineCancelRequested, to_bus
    from docllm.service_layer.pipelines import load_pipeline

    p, _ = running_platform(args)
    run_id = load_pipeline(p, args.family).current_run
    if run_id is None:
        raise CliError(f"{args.family} has no run in progress; see docllm pipeline status", EXIT_NOT_FOUND)
    seq = _last_seq(p)
    # Naming the run: a cancel delivered late must not cancel a newer one.
    p.bus.publish([to_bus(PipelineCancelRequested(family=args.family, run_id=run_id, requested_by=getpass.getuser()))])
    body = _wait_for(p, seq, run_id, {"Pipeline Run Ended"}, timeout_s=args.timeout, show=False)
    if body is None:
        raise CliError(f"timed out after {args.timeout:.0f}s; see docllm pipeline status", EXIT_FAILED)
    if body.get("detail-type") != "Pipeline Run Ended":
        raise CliError(_failure(body), EXIT_FAILED)
    d = body["detail"]
    if args.json:
        emit_json(d)
    else:
        stopped = f"; stopped {', '.join(d['stopped_jobs'])}" if d["stopped_jobs"] else ""
        out.print(line("run ", lit(d["run_id"], "bold"), f" of {d['family']} {d['state']}{stopped}"))
    return 0


def cmd_pipeline_status(args: Namespace) -> int:
    from docllm.service_layer.pipelines import status

    p, _ = running_platform(args)
    rows = status(p)
    if args.json:
        emit_json(rows)
        return 0
    print_table(
        [
            "family",
            "method",
            "stage",
            "stale",
            "next eligible",
            "next scheduled",
            Col("running job", copy=True),
            "last run",
        ],
        [
            (
                r["family"],
                r["method"],
                r["stage"],
                r["stale"]["reasons"] if r["on_change"] else "off (on request)",
                _time(r["next_eligible_at"]) or ("-" if not r["stale"]["documents"] else r["decision"]),
                _time(r["next_scheduled_at"]) or "-",
                ", ".join(r["running_jobs"]) or "-",
                f"{r['last_run']['state']} {_time(r['last_run']['ended_at'])}: {r['last_run']['reason']}"
                if r["last_run"]
                else "-",
            )
            for r in rows
        ],
    )
    return 0


def _time(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else ""
