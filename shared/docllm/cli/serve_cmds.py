"""``ask``, ``deploy``, ``endpoints``: the serving side of the platform."""

from __future__ import annotations

import json
from argparse import Namespace
from typing import Any

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
from docllm.events.contracts import DeploymentRequested, to_bus


def cmd_deploy(args: Namespace) -> int:
    from docllm.cli.pipeline_cmds import _failure, _last_seq, _wait_for
    from docllm.service_layer.jobs import MODELS_PK

    p, _ = running_platform(args)
    if p.state.get(MODELS_PK, args.version) is None:
        raise CliError(f"no model {args.version!r}: see docllm models", EXIT_NOT_FOUND)
    seq = _last_seq(p)
    request = DeploymentRequested(model_version=args.version, target=args.target)
    p.bus.publish([to_bus(request)])
    body = _wait_for(p, seq, request.request_id, {"Model Deployed"}, timeout_s=args.timeout, show=not args.json)
    if body is None:
        raise CliError(f"timed out after {args.timeout:.0f}s; see docllm status", EXIT_FAILED)
    if body.get("detail-type") != "Model Deployed":
        raise CliError(_failure(body), EXIT_FAILED)
    if args.json:
        emit_json(body)
        return 0
    d = body["detail"]
    out.print(
        line(
            "deployed ",
            lit(d["model_version"], "bold"),
            " to ",
            lit(d["target"]),
            " at ",
            lit(d["endpoint"]),
            " (replaced ",
            lit(d.get("previous_version") or "nothing"),
            ")",
        )
    )
    return 0


def cmd_endpoints(args: Namespace) -> int:
    from docllm.service_layer.deploy import ENDPOINTS_PK, deployments

    p, _ = running_platform(args)
    endpoints = [item for _, item in p.state.query(ENDPOINTS_PK)]
    history = deployments(p)
    if args.json:
        emit_json({"endpoints": endpoints, "deployments": history})
        return 0
    print_table(
        ["target", Col("model", copy=True), Col("endpoint", copy=True), "since", Col("replaced", copy=True)],
        [
            (
                e.get("target", ""),
                e.get("model_version", ""),
                e.get("endpoint") or e.get("url", ""),
                e.get("finished_at") or e.get("deployed_at", ""),
                e.get("previous_version") or "",
            )
            for e in endpoints
        ],
    )
    return 0


def cmd_ask(args: Namespace) -> int:
    """Ask through the running platform's API, as any client would (auth, limits, validation)."""
    from docllm.cli.common import api_post

    p, info = running_platform(args)
    body: dict[str, Any] = {"question": args.question, "k": args.k}
    if args.service:
        body["service"] = args.service
    status, answer = api_post(info, p.data_dir, "/v1/ask", body)
    if status != 200:
        message = answer.get("message") if isinstance(answer, dict) else str(answer)
        raise CliError(f"ask failed ({status}): {message}", EXIT_NOT_FOUND if status == 404 else EXIT_FAILED)
    if args.json:
        emit_json(answer)
        return 0
    if answer.get("abstained"):
        out.print(line(lit(answer["answer"], "bold"), "  ", lit(f"({answer.get('reason')})", "dim")))
    else:
        out.print(lit(answer["answer"], multiline=True))
    for i, c in enumerate(answer.get("citations", []), 1):
        out.print(line(f"[{i}] ", lit(c["doc_key"], "bold"), " ", lit(" › ".join(c.get("heading_path") or []), "dim")))
        if c.get("quote"):
            out.print(line("    “", lit(c["quote"][:200]), "”"))
    if answer.get("unsupported"):
        out.print(line(lit("unsupported: ", "yellow"), lit(", ".join(answer["unsupported"]))))
    out.print(line(lit(f"{answer.get('model_version')} · {answer.get('latency_ms')} ms", "dim")))
    return 0


__all__ = ["cmd_ask", "cmd_deploy", "cmd_endpoints", "json"]
