"""``models``, ``model show``, ``approve``/``reject``, ``eval run``, ``benchmarks``, ``lineage``, ``manifest``:
the registry side of the platform, from evaluation to a verifiable decision."""

from __future__ import annotations

import getpass
import json
import os
from argparse import Namespace
from pathlib import Path
from typing import Any

from rich.tree import Tree

from docllm.bootstrap import Platform
from docllm.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    CliError,
    Col,
    emit_json,
    line,
    lit,
    out,
    print_table,
    running_platform,
)
from docllm.events.contracts import EvaluationRequested, ModelReviewSubmitted, to_bus
from docllm.exceptions import NotFoundError

BENCHMARKS_PREFIX = "benchmarks/"


def _model(p: Platform, version: str) -> dict[str, Any]:
    from docllm.service_layer.jobs import MODELS_PK

    item = p.state.get(MODELS_PK, version)
    if item is None:
        raise CliError(f"no model {version!r}: see docllm models", EXIT_NOT_FOUND)
    return item


def _status(p: Platform, version: str) -> str:
    """The status people see: the registry's, or RolledBack for a version an alarm rolled back."""
    try:
        return p.registry.get(version).display_status
    except NotFoundError:
        return "Unregistered"


def _rolled_back(p: Platform, version: str) -> dict[str, str] | None:
    """The alarm and incident that rolled ``version`` back, if one did."""
    try:
        package = p.registry.get(version)
    except NotFoundError:
        return None
    if not package.rolled_back:
        return None
    return {"alarm": package.rolled_back_alarm or "", "incident_id": package.rollback_incident or ""}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


def cmd_models(args: Namespace) -> int:
    from docllm.service_layer.evaluate import latest_evaluation
    from docllm.service_layer.jobs import MODELS_PK

    p, _ = running_platform(args)
    models = [item for _, item in p.state.query(MODELS_PK) if not args.family or item.get("family") == args.family]
    aliases: dict[str, dict[str, str]] = {}
    rows: list[dict[str, Any]] = []
    for m in models:
        family = m.get("family", "")
        if family not in aliases:
            aliases[family] = p.registry.aliases(family)
        evaluation = latest_evaluation(p, m["version"]) or {}
        names = sorted(a for a, v in aliases[family].items() if v == m["version"])
        rows.append(
            {
                **m,
                "status": _status(p, m["version"]),
                "rolled_back": _rolled_back(p, m["version"]),
                "aliases": names,
                "evaluation": {k: evaluation.get(k) for k in ("evaluation_id", "metrics", "report_uri", "html_uri")}
                if evaluation
                else None,
            }
        )
    if args.json:
        emit_json(rows)
        return 0
    table = []
    for r in rows:
        metrics = (r["evaluation"] or {}).get("metrics") or {}
        table.append(
            (
                r["version"],
                r.get("family", ""),
                r["status"],
                ",".join(r["aliases"]),
                _fmt(r.get("metrics", {}).get("final_val_loss")),
                _fmt(metrics.get("perplexity")),
                _fmt(metrics.get("qa_token_f1")),
                _fmt(metrics.get("hallucination_rate")),
                r.get("dataset_version", ""),
            )
        )
    print_table(
        [
            Col("model", copy=True),
            "family",
            "status",
            "alias",
            "val loss",
            "ppl",
            "qa f1",
            "halluc.",
            Col("dataset", copy=True),
        ],
        table,
    )
    return 0


def cmd_model_show(args: Namespace) -> int:
    from docllm.service_layer.evaluate import EVALUATIONS_PK
    from docllm.service_layer.gate import decisions

    p, _ = running_platform(args)
    m = _model(p, args.version)
    try:
        package: dict[str, Any] | None = p.registry.get(args.version).model_dump(mode="json")
    except NotFoundError:
        package = None
    evaluations = [i for _, i in p.state.query(EVALUATIONS_PK) if i.get("model_version") == args.version]
    shown: dict[str, Any] = {
        "model": m,
        "registry": package,
        "status": _status(p, args.version),
        "aliases": sorted(a for a, v in p.registry.aliases(m.get("family", "")).items() if v == args.version),
        "evaluations": sorted(evaluations, key=lambda e: e.get("completed_at", "")),
        "decisions": [d.model_dump(mode="json") for d in decisions(p, args.version)],
    }
    if args.json:
        emit_json(shown)
        return 0
    out.print(line("model ", lit(args.version, "bold"), "  family ", lit(m.get("family", ""))))
    out.print(line("status ", lit(_status(p, args.version), "bold"), "  aliases ", lit(",".join(shown["aliases"]))))
    rolled_back = _rolled_back(p, args.version)
    if rolled_back is not None:
        out.print(
            line(
                "rolled back: alarm ",
                lit(rolled_back["alarm"], "bold"),
                "  incident ",
                lit(rolled_back["incident_id"]),
                " (docllm incident show)",
            )
        )
    out.print(line("dataset ", lit(m.get("dataset_version", "")), "  tokenizer ", lit(m.get("tokenizer_version", ""))))
    out.print(line("export ", lit(m.get("export_uri", ""))))
    for e in shown["evaluations"]:
        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(e.get("metrics", {}).items()))
        out.print(line("evaluation ", lit(e["evaluation_id"]), ": ", lit(metrics)))
        out.print(line("  report ", lit(e.get("html_uri", ""))))
    for d in shown["decisions"]:
        out.print(line("decision ", lit(d["status"], "bold"), " by ", lit(d["decided_by"]), " at ", lit(d["at"])))
        for reason in d["reasons"]:
            out.print(line("  ", lit(reason)))
    return 0


def print_decision(body: dict[str, Any]) -> None:
    d = body["detail"]
    verdict = "approved" if body["detail-type"] == "Model Approved" else "rejected"
    out.print(line("model ", lit(d["model_version"], "bold"), f" {verdict} by ", lit(d["decided_by"])))
    for reason in d.get("reasons", []):
        out.print(line("  ", lit(reason)))
    out.print(line("champion ", lit(d.get("champion") or "none"), "  manifest ", lit(d.get("manifest_uri") or "")))


def _review(args: Namespace, decision: str) -> int:
    from docllm.cli.pipeline_cmds import _failure, _last_seq, _wait_for

    p, _ = running_platform(args)
    _model(p, args.version)
    review = ModelReviewSubmitted(
        model_version=args.version,
        decision="approve" if decision == "approve" else "reject",
        # The local platform's one identity is the OS user who owns the data directory (docs/cli.md).
        reviewer=f"local:{getpass.getuser()}",
        reason=args.reason,
    )
    seq = _last_seq(p)
    p.bus.publish([to_bus(review)])
    body = _wait_for(
        p, seq, review.request_id, {"Model Approved", "Model Rejected"}, timeout_s=args.timeout, show=not args.json
    )
    if body is None:
        raise CliError(f"timed out after {args.timeout:.0f}s; see docllm status", EXIT_FAILED)
    if body.get("detail-type") not in ("Model Approved", "Model Rejected"):
        raise CliError(_failure(body), EXIT_FAILED)
    if args.json:
        emit_json(body)
    else:
        print_decision(body)
    return 0


def cmd_approve(args: Namespace) -> int:
    return _review(args, "approve")


def cmd_reject(args: Namespace) -> int:
    return _review(args, "reject")


def _upload_benchmarks(p: Platform, files: list[str]) -> list[str]:
    """Check every file (a YAML with the data files it names), then upload them; nothing is uploaded
    when one is bad."""
    from docllm.evaluation.benchmarks import BenchmarkError, validate_benchmark_file

    paths = [Path(name) for name in files]
    for path in paths:
        if not path.is_file():
            raise CliError(f"{path}: no such file", EXIT_NOT_FOUND)
    # Keys keep the files' layout below their common folder: a task YAML and its data/limits.jsonl
    # stay side by side as the YAML names them.
    root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    bodies = {p.resolve().relative_to(root).as_posix(): p.read_bytes() for p in paths}
    existing = {
        info.key[len(BENCHMARKS_PREFIX) :]: info for info in p.objects.list(p.settings.raw_bucket, BENCHMARKS_PREFIX)
    }
    for name, body in bodies.items():
        siblings = {k: v for k, v in bodies.items() if k != name}
        for other in existing:
            if other not in siblings:
                siblings[other] = p.objects.get(p.settings.raw_bucket, BENCHMARKS_PREFIX + other)
        try:
            validate_benchmark_file(name, body, siblings)
        except BenchmarkError as e:
            raise CliError(str(e), EXIT_FAILED) from None
    keys = []
    for name, body in bodies.items():
        p.objects.put(p.settings.raw_bucket, BENCHMARKS_PREFIX + name, body)
        keys.append(BENCHMARKS_PREFIX + name)
    return keys


def cmd_benchmarks_add(args: Namespace) -> int:
    p, _ = running_platform(args)
    keys = _upload_benchmarks(p, args.files)
    if args.json:
        emit_json({"uploaded": keys})
    else:
        for key in keys:
            out.print(line("uploaded ", lit(f"s3://{p.settings.raw_bucket}/{key}")))
    return 0


def cmd_benchmarks_list(args: Namespace) -> int:
    p, _ = running_platform(args)
    found = [
        {"key": i.key, "size": i.size, "last_modified": i.last_modified.isoformat()}
        for i in p.objects.list(p.settings.raw_bucket, BENCHMARKS_PREFIX)
    ]
    if args.json:
        emit_json(found)
        return 0
    print_table(
        [Col("key", copy=True), "bytes", "uploaded"], [(f["key"], f["size"], f["last_modified"]) for f in found]
    )
    return 0


def cmd_eval_run(args: Namespace) -> int:
    from docllm.cli.pipeline_cmds import _failure, _last_seq, _wait_for

    p, _ = running_platform(args)
    _model(p, args.version)
    keys = _upload_benchmarks(p, args.benchmark) if args.benchmark else []
    names = [k[len(BENCHMARKS_PREFIX) :] for k in keys]
    seq = _last_seq(p)
    request = EvaluationRequested(model_version=args.version, benchmarks=names)
    p.bus.publish([to_bus(request)])
    body = _wait_for(
        p, seq, request.request_id, {"Model Approved", "Model Rejected"}, timeout_s=args.timeout, show=not args.json
    )
    if body is None:
        raise CliError(f"timed out after {args.timeout:.0f}s; see docllm status", EXIT_FAILED)
    if body.get("detail-type") not in ("Model Approved", "Model Rejected"):
        raise CliError(_failure(body), EXIT_FAILED)
    from docllm.service_layer.evaluate import latest_evaluation

    evaluation = latest_evaluation(p, args.version) or {}
    if args.json:
        emit_json({"decision": body, "evaluation": evaluation})
        return 0
    for k, v in sorted(evaluation.get("metrics", {}).items()):
        out.print(line(lit(k), " ", lit(_fmt(v), "bold")))
    out.print(line("report ", lit(evaluation.get("html_uri", ""))))
    print_decision(body)
    return 0


def cmd_lineage(args: Namespace) -> int:
    from docllm.service_layer.lineage import lineage

    p, _ = running_platform(args)
    _model(p, args.version)
    tree = lineage(p, args.version)
    if args.json:
        emit_json(tree)
        return 0
    root = Tree(line("model ", lit(args.version, "bold")))
    _tree(root, tree, limit=args.documents)
    out.print(root)
    return 0


def _tree(node: Tree, data: dict[str, Any], *, limit: int) -> None:
    for key, value in data.items():
        if key == "model_version":
            continue
        if isinstance(value, dict):
            _tree(node.add(lit(key, "bold")), value, limit=limit)
        elif isinstance(value, list):
            branch = node.add(line(lit(key, "bold"), f" ({len(value)})"))
            for v in value[:limit] if key == "documents" else value:
                if isinstance(v, dict):
                    label = v.get("doc_key") or v.get("decision_id") or v.get("evaluation_id") or json.dumps(v)[:80]
                    sub = branch.add(lit(label))
                    for k2, v2 in v.items():
                        if k2 not in ("doc_key",) and not isinstance(v2, dict | list):
                            sub.add(line(lit(k2, "dim"), " ", lit(v2)))
                else:
                    branch.add(lit(v))
            if key == "documents" and len(value) > limit:
                branch.add(lit(f"… {len(value) - limit} more (--documents N)", "dim"))
        else:
            node.add(line(lit(key, "dim"), " ", lit(value)))


def cmd_manifest_verify(args: Namespace) -> int:
    from docllm.service_layer import manifest

    p, _ = running_platform(args)
    _model(p, args.version)
    from docllm.ports.signer import load_public_keys

    try:
        keys = load_public_keys(args.public_key) if args.public_key else None
        report = manifest.verify(p, args.version, sequence=args.sequence, public_key=keys)
    except NotFoundError as e:
        raise CliError(str(e), EXIT_NOT_FOUND) from None
    if args.json:
        emit_json(report.model_dump(mode="json"))
    elif report.ok:
        out.print(line(lit("verified", "bold green"), " ", lit(report.manifest_key)))
    else:
        out.print(line(lit("MISMATCH", "bold red"), " ", lit(report.manifest_key)))
        for m in report.mismatches:
            out.print(line("  ", lit(m.kind, "bold"), " ", lit(m.subject), " ", lit(m.detail or "")))
            if m.expected or m.actual:
                out.print(line("    expected ", lit(m.expected or ""), "  actual ", lit(m.actual or "")))
    return 0 if report.ok else EXIT_FAILED


def cmd_manifest_show(args: Namespace) -> int:
    from docllm.service_layer import manifest

    p, _ = running_platform(args)
    _model(p, args.version)
    try:
        entry = manifest.find_manifest(p, args.version)
        statement = manifest.show(p, args.version)
    except NotFoundError as e:
        raise CliError(str(e), EXIT_NOT_FOUND) from None
    if args.json:
        emit_json({"key": entry.key, "uri": entry.uri, "sha256": entry.sha256, "statement": statement})
        return 0
    out.print(line("manifest ", lit(entry.uri, "bold"), " sha256:", lit(entry.sha256)))
    for s in statement.get("subject", []):
        out.print(line("  subject ", lit(s["name"]), " sha256:", lit(s["digest"].get("sha256", ""))))
    predicate = statement.get("predicate", {})
    deps = predicate.get("buildDefinition", {}).get("resolvedDependencies", [])
    out.print(line("  inputs ", lit(len(deps)), " resolved dependencies (--json for all)"))
    return 0
