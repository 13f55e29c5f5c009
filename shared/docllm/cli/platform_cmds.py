"""``up``, ``status``, ``events``, ``dlq``, ``jobs``: running and inspecting the platform."""

from __future__ import annotations

import json
import time
from argparse import Namespace
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docllm.bootstrap import Platform
from docllm.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    Col,
    console,
    data_dir,
    emit_json,
    line,
    lit,
    out,
    print_table,
    running_platform,
)
from docllm.records import DOCS_PK


def cmd_up(args: Namespace) -> int:
    import os
    import threading

    from docllm.exceptions import PortInUseError
    from docllm.runtime.local import RUNTIME_FILE, LocalRuntime

    d = data_dir(args)
    runtime = LocalRuntime(d, port=args.port, auth=not args.no_auth, log=lambda m: console.print(lit(m, "dim")))
    console.print(line("docllm: starting the local platform in ", lit(d, "bold"), " …"))
    ended = threading.Event()

    def started() -> bool:
        # start() writes the runtime file last, once the API listens (a stale one names another pid).
        try:
            return int(json.loads((d / RUNTIME_FILE).read_text(encoding="utf-8"))["pid"]) == os.getpid()
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def announce() -> None:
        while not started():
            if ended.wait(0.1):
                return
        key = line("API key in ", lit(d / "api-key")) if runtime.auth else "no auth"
        console.print(line("API on ", lit(runtime.api_url, "bold"), " (", key, ")"))
        console.print(
            f"{len(runtime.wiring.functions)} functions, {len(runtime.wiring.rules)} rules "
            f"from {runtime.template.name}. Ctrl-C to stop."
        )

    threading.Thread(target=announce, daemon=True).start()
    try:
        runtime.run_forever()
    except PortInUseError as e:
        console.print(
            line(("error:", "red"), " ", lit(e), "; use --port 0 for any free port, or another --port"), soft_wrap=True
        )
        return 2
    finally:
        ended.set()
    console.print("docllm: stopped cleanly")
    return 0


def _ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def _detail_type(body: str) -> str | None:
    try:
        value = json.loads(body).get("detail-type")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def cmd_status(args: Namespace) -> int:
    p, info = running_platform(args)
    q = p.local_queue
    queues: list[dict[str, Any]] = []
    for name in sorted(q.queues):
        s = q.stats(name)
        dead = [
            {
                "message_id": d.message_id,
                "reason": d.reason,
                "receive_count": d.receive_count,
                "detail_type": _detail_type(d.body),
            }
            for d in q.dead_letters(name, limit=20)
        ]
        consumer = p.wiring.consumer_of(name)
        queues.append(
            {
                "queue": name,
                "function": consumer.name if consumer else None,
                "visible": s.visible,
                "in_flight": s.in_flight,
                "delayed": s.delayed,
                "dead": s.dead,
                "dead_letters": dead,
            }
        )
    docs = Counter(str(item.get("status")) for _, item in p.state.query(DOCS_PK))
    events: list[dict[str, Any]] = (
        [
            {"seq": e.seq, "time": _ts(e.ts_ms), "source": e.source, "detail_type": e.detail_type, "targets": e.targets}
            for e in p.event_log.last(args.events)
        ]
        if args.events
        else []
    )
    jobs = [j.model_dump(mode="json") for j in p.jobs.list_jobs()]  # type: ignore[attr-defined]
    for job in jobs:
        if job["status"] == "InProgress":
            job["progress"] = _latest_training_metrics(p, job["name"])
    health = {
        q["function"]: ("failing" if q["dead"] else "busy" if q["visible"] or q["in_flight"] else "ok")
        for q in queues
        if q["function"]
    }
    report = {
        "data_dir": str(p.data_dir),
        "api_url": info["api_url"],
        "pid": info["pid"],
        "queues": queues,
        "documents": dict(docs),
        "jobs": jobs,
        "recent_events": events,
        "stage_health": health,
    }
    if args.json:
        emit_json(report)
        return 0
    out.print(
        line(
            ("docllm", "bold"),
            f" local platform (pid {info['pid']}) — API ",
            lit(info["api_url"]),
            " — data ",
            lit(p.data_dir),
        )
    )
    print_table(
        [Col("queue", copy=True), "function", "visible", "in flight", "delayed", "DLQ", "health"],
        (
            (
                row["queue"],
                row["function"] or "-",
                row["visible"],
                row["in_flight"],
                row["delayed"],
                lit(row["dead"], "red") if row["dead"] else "0",
                health.get(row["function"] or "-", "-"),
            )
            for row in queues
        ),
    )
    for row in queues:
        for d in row["dead_letters"]:
            out.print(
                line(
                    ("DLQ", "red"),
                    " ",
                    lit(row["queue"]),
                    " ",
                    lit(d["message_id"]),
                    " (",
                    lit(d["detail_type"]),
                    "): ",
                    lit(d["reason"]),
                )
            )
    out.print("documents: " + (", ".join(f"{k} {v}" for k, v in sorted(docs.items())) or "none"), markup=False)
    for j in jobs[-5:]:
        reason = (" — ", lit(j["failure_reason"])) if j.get("failure_reason") else ()
        out.print(line("job ", lit(j["name"]), ": ", lit(j["status"]), *reason))
        if j.get("progress"):
            out.print("    " + ", ".join(f"{k} {v:.4g}" for k, v in j["progress"].items()), markup=False)
    for e in events:
        out.print(
            line(
                (e["time"], "dim"),
                " ",
                lit(e["source"]),
                " ",
                lit(e["detail_type"]),
                " → ",
                lit(", ".join(e["targets"]) or "(no rule)"),
            )
        )
    return 0


def _subject(detail: Any) -> str:
    if not isinstance(detail, dict):
        return ""
    obj = detail.get("object")
    return str(
        detail.get("doc_key")
        or (obj.get("key") if isinstance(obj, dict) else None)
        or detail.get("TrainingJobName")
        or detail.get("dataset_version")
        or detail.get("model_version")
        or ""
    )


def cmd_events_tail(args: Namespace) -> int:
    p, _ = running_platform(args)
    events = p.event_log.last(args.n)
    if args.json and not args.follow:
        emit_json([e.body for e in events])  # one JSON document; --follow streams one JSON per line
        return 0
    seq = events[-1].seq if events else 0
    try:
        while True:
            for e in events:
                if args.json:
                    print(json.dumps(e.body), flush=True)
                else:
                    out.print(
                        line(
                            (_ts(e.ts_ms), "dim"),
                            " ",
                            lit(f"{e.bus:9} {e.source:16} {e.detail_type:38} "),
                            lit(_subject(e.body.get("detail"))),
                            (" → ", "dim"),
                            lit(", ".join(e.targets) or "-", "dim"),
                        )
                    )
            if not args.follow:
                return 0
            time.sleep(0.5)
            events = p.event_log.since(seq)
            if events:
                seq = events[-1].seq
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how --follow ends


def cmd_events_schemas(args: Namespace) -> int:
    from docllm.events.schemas import write_schemas

    paths = write_schemas(Path(args.out))
    for path in paths:
        console.print(line("wrote ", lit(path)))
    return 0


def _known_queue(p: Platform, queue: str) -> None:
    known = sorted(p.local_queue.queues)
    if queue not in known:
        raise CliError(f"no queue named {queue!r}; known: {', '.join(known)}", EXIT_NOT_FOUND)


def cmd_dlq_redrive(args: Namespace) -> int:
    p, _ = running_platform(args)
    _known_queue(p, args.queue)
    n = p.local_queue.redrive(args.queue)
    if args.json:
        emit_json({"queue": args.queue, "redriven": n})
    else:
        console.print(line(f"{n} message(s) moved from the DLQ back to ", lit(args.queue)))
    return 0


def cmd_dlq_purge(args: Namespace) -> int:
    import sys

    p, _ = running_platform(args)
    _known_queue(p, args.queue)
    dead = p.local_queue.stats(args.queue).dead
    if dead and not args.yes:
        if args.json or not sys.stdin.isatty():
            raise CliError(f"refusing to delete {dead} dead letter(s) of {args.queue} without --yes", EXIT_USAGE)
        console.print(line(f"delete {dead} dead letter(s) of ", lit(args.queue), " for good? [y/N] "), end="")
        if input().strip().lower() not in ("y", "yes"):
            console.print("nothing deleted", markup=False)
            return 1
    n = p.local_queue.purge_dead(args.queue) if dead else 0
    if args.json:
        emit_json({"queue": args.queue, "purged": n})
    else:
        console.print(line(f"{n} dead letter(s) of ", lit(args.queue), " deleted"))
    return 0


def cmd_jobs(args: Namespace) -> int:
    p, _ = running_platform(args)
    jobs = p.jobs.list_jobs()  # type: ignore[attr-defined]
    if args.json:
        emit_json([j.model_dump(mode="json") for j in jobs])
        return 0
    print_table(
        [Col("job", copy=True), "status", "artefacts / reason"],
        ((j.name, j.status, j.failure_reason or j.model_artifacts_uri or "") for j in jobs),
    )
    return 0


def _latest_training_metrics(p: Platform, job: str) -> dict[str, float]:
    """The newest TrainLoss / ValidationLoss / TokensPerSecond a running job reported."""
    query = getattr(p.metrics, "query", None)
    if query is None:
        return {}
    latest: dict[str, float] = {}
    for name in ("TrainLoss", "ValidationLoss", "TokensPerSecond", "LearningRate"):
        points = [m for m in query(name) if ("job", job) in m.dimensions]
        if points:
            latest[name] = points[-1].value
    return latest
