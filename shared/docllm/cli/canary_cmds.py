"""``canary run``, ``canary runs``, ``canary set``, ``canary unset``: the scheduled canary on demand, what
its runs measured, and the operator's question set (docs/canary.md)."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from typing import Any

from docllm.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    Col,
    emit_json,
    int_range,
    line,
    lit,
    out,
    print_table,
    running_platform,
)

_JSON = (("--json",), {"action": "store_true", "help": 'machine-readable JSON on stdout (errors too: {"error": ...})'})
_TARGET = (
    ("--target",),
    {
        "choices": ["local", "sagemaker", "bedrock"],
        "default": None,
        "help": "the deploy target to check (default: the platform's, local here)",
    },
)

#: The verbs, as plain data for ``docllm.cli.main`` (``_plugged_commands``): path, "module:function",
#: help, and each argument's flags and argparse keywords.
COMMANDS: tuple[tuple[tuple[str, ...], str, str, tuple[tuple[tuple[str, ...], dict[str, Any]], ...]], ...] = (
    (
        ("canary", "run"),
        "canary_cmds:cmd_canary_run",
        "ask the canary questions of the live model now, as the 5-minute schedule does (recorded, published)",
        (_TARGET, _JSON),
    ),
    (
        ("canary", "runs"),
        "canary_cmds:cmd_canary_runs",
        "the canary's recent runs, newest first: what served, accuracy, questions, errors",
        (
            _TARGET,
            (
                ("--limit",),
                {"type": int_range(1, 288), "default": 20, "help": "runs shown, 1-288 (default: %(default)s)"},
            ),
            _JSON,
        ),
    ),
    (
        ("canary", "set"),
        "canary_cmds:cmd_canary_set",
        "check a question set (JSONL, docs/canary.md) and make it the canary's (benchmarks/canary.jsonl)",
        ((("file",), {"help": 'JSONL: {"question", "expect": "answer"|"abstain", "doc_keys": [...]} per line'}), _JSON),
    ),
    (
        ("canary", "unset"),
        "canary_cmds:cmd_canary_unset",
        "remove the operator's question set: the canary asks its default set again",
        (_JSON,),
    ),
)


def cmd_canary_run(args: Namespace) -> int:
    """One canary run now, in this process, as the schedule runs it (recorded and published alike)."""
    from docllm.service_layer.canary import CANARY_RUN_REQUESTED, NOTHING_DEPLOYED, handle_canary_event

    p, _ = running_platform(args)
    detail = {"target": args.target} if args.target else {}
    run = handle_canary_event(p, {"source": "docllm.cli", "detail-type": CANARY_RUN_REQUESTED, "detail": detail})
    if run["outcome"] == NOTHING_DEPLOYED:  # recorded as such; nothing measured, nothing published
        raise CliError(f"nothing is deployed on {run['target']!r}: no canary metric published", EXIT_NOT_FOUND)
    if args.json:
        emit_json(run)
    else:
        _show_run(run)
    return 0


def _show_run(run: dict[str, Any]) -> None:
    if run.get("accuracy") is None:
        out.print(line("canary on ", lit(run["target"]), ": ", lit(run["outcome"], "bold")))
        return
    question_set = run.get("set") or {}
    source = question_set.get("source", "")
    if source == "default":
        source += f" set of dataset {question_set.get('dataset_version')} ({question_set.get('split')} split)"
    out.print(
        line(
            "canary on ",
            lit(run["target"]),
            ": ",
            lit(f"{run['correct']}/{run['questions']} right ({run['accuracy']:.1f} %)", "bold"),
            " · ",
            lit(run.get("model_version") or ""),
            " · ",
            lit(source, "dim"),
        )
    )
    for version, t in (run.get("by_version") or {}).items():
        out.print(line("  ", lit(version), f": {t['correct']}/{t['questions']} right"))
    if question_set.get("error"):
        out.print(line(lit("operator set not used: ", "yellow"), lit(question_set["error"])))
    if run.get("skipped"):
        out.print(line(lit(f"{run['skipped']} question(s) not asked: time budget spent", "yellow")))
    wrong = [r for r in run.get("results", []) if not r["correct"]]
    if wrong:
        print_table(
            ["expected", "question", "got"],
            [(r["expect"], r["question"], r["error"] or (r["reason"] or "answered") + _cited(r)) for r in wrong],
        )


def _cited(result: dict[str, Any]) -> str:
    return f" citing {', '.join(result['cited'])}" if result.get("cited") else ""


def cmd_canary_runs(args: Namespace) -> int:
    from docllm.service_layer.canary import canary_runs

    p, _ = running_platform(args)
    runs = canary_runs(p, args.target, limit=args.limit)
    if args.json:
        emit_json({"runs": runs})
        return 0
    print_table(
        [
            "started",
            "target",
            Col("model", copy=True),
            "outcome",
            Col("accuracy", justify="right"),
            "questions",
            "errors",
        ],
        [
            (
                r.get("started_at", ""),
                r.get("target", ""),
                r.get("model_version") or "",
                r.get("outcome", ""),
                "" if r.get("accuracy") is None else f"{r['accuracy']:.1f} %",
                r.get("questions", ""),
                r.get("errors", ""),
            )
            for r in runs
        ],
    )
    return 0


def cmd_canary_set(args: Namespace) -> int:
    """Check a question set and make it the canary's (the raw bucket's ``benchmarks/canary.jsonl``)."""
    from docllm.monitoring.canary import CANARY_SET_KEY, CanarySetError, parse_canary_set

    p, _ = running_platform(args)
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no file {args.file!r}", EXIT_NOT_FOUND)
    body = path.read_bytes()
    try:
        items = parse_canary_set(body, key=path.name)
    except CanarySetError as e:
        raise CliError(str(e), EXIT_USAGE) from e
    p.objects.put(p.settings.raw_bucket, CANARY_SET_KEY, body, content_type="application/x-ndjson")
    uri = f"s3://{p.settings.raw_bucket}/{CANARY_SET_KEY}"
    covered = sum(i.expect == "answer" for i in items)
    if args.json:
        emit_json({"uploaded": uri, "questions": len(items), "answer": covered, "abstain": len(items) - covered})
    else:
        out.print(
            line("uploaded ", lit(uri), f": {len(items)} questions ({covered} answerable); the next run asks them")
        )
    return 0


def cmd_canary_unset(args: Namespace) -> int:
    """Remove the operator's question set: the canary asks its default set again."""
    from docllm.exceptions import NotFoundError
    from docllm.monitoring.canary import CANARY_SET_KEY

    p, _ = running_platform(args)
    try:
        p.objects.head(p.settings.raw_bucket, CANARY_SET_KEY)
    except NotFoundError:
        raise CliError("no operator question set: the canary already asks its default set", EXIT_NOT_FOUND) from None
    p.objects.delete(p.settings.raw_bucket, CANARY_SET_KEY)
    if args.json:
        emit_json({"removed": f"s3://{p.settings.raw_bucket}/{CANARY_SET_KEY}"})
    else:
        out.print("removed the operator's question set: the next run asks the default set")
    return 0


__all__ = ["COMMANDS", "cmd_canary_run", "cmd_canary_runs", "cmd_canary_set", "cmd_canary_unset"]
