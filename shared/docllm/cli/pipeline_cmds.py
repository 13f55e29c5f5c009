"""``dataset build|list|show|diff`` and ``train``: the training side of the platform."""

from __future__ import annotations

import json
import time
from argparse import Namespace
from typing import Any

from docllm.bootstrap import Platform
from docllm.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    CliError,
    Col,
    console,
    emit_json,
    ensure_running,
    line,
    lit,
    out,
    print_table,
    running_platform,
)
from docllm.events.contracts import DatasetBuildRequested, TrainingRequested, to_bus

DONE = {"Dataset Built", "Model Trained", "Stage Failed"}
#: How often a waiting verb looks at the event log and the dead-letter queues.
POLL_S = 0.5


def _wait_for(
    p: Platform, after_seq: int, request_id: str, wanted: set[str], *, timeout_s: float, show: bool
) -> dict[str, Any] | None:
    """Follow the event log until an event of ``wanted`` for *this* request appears, or the request
    fails: a "Stage Failed" that names it, or one of its messages in a dead-letter queue (a stage
    that gave up after its retries publishes nothing; its dead letter says why)."""
    deadline = time.monotonic() + timeout_s
    seq = after_seq
    with console.status("waiting for the pipeline…", spinner="dots") if show else _Null():
        while time.monotonic() < deadline:
            for e in p.event_log.since(seq):
                seq = e.seq
                if (e.body.get("detail") or {}).get("request_id") != request_id:
                    continue  # another request's chain
                if show:
                    console.print(line(lit(e.source, "dim"), " ", lit(e.detail_type)))
                if e.detail_type in wanted or e.detail_type == "Stage Failed":
                    return e.body
            dead = _dead_letter_of(p, request_id)
            if dead is not None:
                return dead
            ensure_running(p)
            time.sleep(POLL_S)
    return None


def _dead_letter_of(p: Platform, request_id: str) -> dict[str, Any] | None:
    """A "Stage Failed"-shaped answer for a message of this request found in a dead-letter queue."""
    q = p.local_queue
    for name in q.queues:
        for dead in q.dead_letters(name, limit=1000):
            try:
                detail = json.loads(dead.body).get("detail") or {}
            except (ValueError, AttributeError):
                continue
            if isinstance(detail, dict) and detail.get("request_id") == request_id:
                stage = name.removesuffix("Queue").lower()
                return {
                    "detail-type": "Stage Failed",
                    "source": "docllm.cli",
                    "detail": {"stage": stage, "subject": name, "reason": dead.reason, "request_id": request_id},
                }
    return None


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _last_seq(p: Platform) -> int:
    last = p.event_log.last(1)
    return last[0].seq if last else 0


def cmd_dataset_build(args: Namespace) -> int:
    p, _ = running_platform(args)
    seq = _last_seq(p)
    services = [s for s in (args.services or "").split(",") if s]
    request = DatasetBuildRequested(family=args.family, services=services)
    p.bus.publish([to_bus(request)])
    if args.no_wait:
        if args.json:
            emit_json({"request_id": request.request_id})
        return 0
    body = _wait_for(p, seq, request.request_id, {"Dataset Built"}, timeout_s=args.timeout, show=not args.json)
    if body is None:
        raise CliError(f"timed out after {args.timeout:.0f}s; see docllm status", EXIT_FAILED)
    if body["detail-type"] != "Dataset Built":
        raise CliError(_failure(body), EXIT_FAILED)
    d = body["detail"]
    if args.json:
        emit_json(d)
    else:
        out.print(
            line(
                "dataset ",
                lit(d["dataset_version"], "bold"),
                f": {d['documents']} documents, {d['chunks']} chunks "
                f"(+{d['added']} −{d['removed']} ~{d['changed']} vs ",
                lit(d["previous_version"] or "nothing"),
                ")",
            )
        )
    return 0


def _failure(body: dict[str, Any]) -> str:
    """One line for a failed request: which stage, and why (shown literally by ``main``)."""
    detail = body.get("detail") or {}
    return f"{detail.get('stage')} failed: {detail.get('reason')}"


def cmd_dataset_list(args: Namespace) -> int:
    from docllm.dataset.versions import list_datasets

    p, _ = running_platform(args)
    rows = list_datasets(p.state)
    if args.json:
        emit_json([r.model_dump(mode="json") for r in rows])
        return 0
    print_table(
        [Col("version", copy=True), "created", "family", "services", "docs", "chunks", "tokens≈", "+/−/~"],
        [
            (
                r.version,
                r.created_at[:19],
                r.family or "",
                ",".join(r.services) or "all",
                r.documents,
                r.chunks,
                r.token_estimate,
                f"{r.added}/{r.removed}/{r.changed}",
            )
            for r in rows
        ],
    )
    return 0


def cmd_dataset_show(args: Namespace) -> int:
    from docllm.dataset.shards_output import load_token_counts
    from docllm.dataset.versions import load_manifest

    p, _ = running_platform(args)
    manifest = load_manifest(p.objects, p.settings.artifact_bucket, args.version)
    tokenized = [item for sk, item in p.state.query("shards", args.version + "/")]
    exact = None
    if tokenized:
        counts = load_token_counts(p.objects, str(tokenized[-1]["shards_uri"]))
        exact = {
            "tokenizer_version": tokenized[-1]["tokenizer_version"],
            "splits": counts.splits,
            "documents": counts.documents,
        }
    if args.json:
        emit_json({"manifest": manifest.model_dump(mode="json"), "tokens": exact})
        return 0
    s = manifest.stats
    out.print(
        line(
            lit(manifest.version, "bold"),
            f" created {manifest.created_at} family ",
            lit(manifest.family or "-"),
            f"; {s.documents} documents, {s.chunks} chunks, ≈{s.token_estimate} tokens, {s.bytes} bytes",
        )
    )
    print_table(
        ["split", "documents", "chunks", "tokens≈", "tokens (exact)"],
        [
            (
                split,
                c.documents,
                c.chunks,
                c.token_estimate,
                exact["splits"].get(split, "") if exact else "not tokenized",
            )
            for split, c in s.per_split.items()
        ],
    )
    print_table(
        ["service", "documents", "chunks", "tokens≈"],
        [(service, c.documents, c.chunks, c.token_estimate) for service, c in s.per_service.items()],
    )
    return 0


def cmd_dataset_diff(args: Namespace) -> int:
    from docllm.dataset.versions import diff_manifests, load_manifest

    p, _ = running_platform(args)
    a = load_manifest(p.objects, p.settings.artifact_bucket, args.a)
    b = load_manifest(p.objects, p.settings.artifact_bucket, args.b)
    diff = diff_manifests(a, b)
    if args.json:
        emit_json(diff.model_dump(mode="json"))
        return 0
    for label, keys, colour in (
        ("added", diff.added, "green"),
        ("removed", diff.removed, "red"),
        ("changed", diff.changed, "yellow"),
    ):
        for key in keys:
            out.print(line((f"{label:8}", colour), " ", lit(key)))
    out.print(f"{len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed")
    return 0


def cmd_train(args: Namespace) -> int:
    # The family was checked against families.yaml when the arguments were parsed.
    p, _ = running_platform(args)
    seq = _last_seq(p)
    request = TrainingRequested(family=args.model_family)
    p.bus.publish([to_bus(request)])
    if args.no_wait:
        if args.json:
            emit_json({"request_id": request.request_id})
        return 0
    wanted = {"Model Trained"} if args.until == "trained" else {"Model Approved", "Model Rejected"}
    body = _wait_for(p, seq, request.request_id, wanted, timeout_s=args.timeout, show=not args.json)
    if body is None:
        raise CliError(f"timed out after {args.timeout:.0f}s; the job may still run: docllm status", EXIT_FAILED)
    if body.get("detail-type") not in wanted:
        raise CliError(_failure(body), EXIT_FAILED)
    if args.json:
        emit_json(body)
        return 0
    d = body["detail"]
    if body["detail-type"] == "Model Trained":
        out.print(line("model ", lit(d["model_version"], "bold"), " → ", lit(d["export_uri"])))
        return 0
    from docllm.cli.model_cmds import print_decision

    print_decision(body)
    return 0


def cmd_models(args: Namespace) -> int:
    from docllm.service_layer.jobs import MODELS_PK

    p, _ = running_platform(args)
    models = [item for _, item in p.state.query(MODELS_PK)]
    if args.json:
        emit_json(models)
        return 0
    rows = []
    for m in models:
        metrics = m.get("metrics", {})
        rows.append(
            (
                m["version"],
                m.get("family", ""),
                m.get("dataset_version", ""),
                m.get("tokenizer_version", ""),
                f"{metrics.get('final_val_loss', float('nan')):.3f}",
                f"{metrics.get('unigram_val_loss', float('nan')):.3f}",
                int(metrics.get("tokens_seen", 0)),
                m.get("export_uri", ""),
            )
        )
    print_table(
        [
            Col("model", copy=True),
            "family",
            Col("dataset", copy=True),
            Col("tokenizer", copy=True),
            "val loss",
            "unigram",
            "tokens",
            Col("export", copy=True),
        ],
        rows,
    )
    return 0


def cmd_generate(args: Namespace) -> int:
    import tempfile
    from pathlib import Path

    from docllm.model import generate_text
    from docllm.ports.objects import split_uri
    from docllm.service_layer.jobs import MODELS_PK

    p, _ = running_platform(args)
    item = p.state.get(MODELS_PK, args.model)
    if item is None:
        raise CliError(f"no model {args.model!r}; see docllm models", EXIT_NOT_FOUND)
    bucket, prefix = split_uri(str(item["export_uri"]))
    with tempfile.TemporaryDirectory() as tmp:
        for info in p.objects.list(bucket, prefix):
            p.objects.download_file(bucket, info.key, Path(tmp) / info.key[len(prefix) :])
        text = generate_text(
            Path(tmp),
            args.prompt,
            max_new_tokens=args.max_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            seed=args.seed,
        )
    # generate_text returns the whole text: the prompt (as the tokenizer decodes it) and what follows.
    completion = text[len(args.prompt) :] if text.startswith(args.prompt) else None
    if args.json:
        emit_json({"model": args.model, "prompt": args.prompt, "text": text, "completion": completion})
    elif completion is not None:
        out.print(line(lit(args.prompt, "bold"), lit(completion, multiline=True)))
    else:
        out.print(lit(text, multiline=True))
    return 0
