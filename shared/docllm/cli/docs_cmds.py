"""``ingest``, ``docs``, ``chunks``, ``dedup-log``, ``search``, ``eval retrieval``."""

from __future__ import annotations

import hashlib
import json
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

from rich.table import Table

from docllm.cli.common import api_get, console, data_dir, emit_json, out, progress_bars, running_platform
from docllm.exceptions import NotFoundError
from docllm.records import DOCS_PK, DocumentRecord
from docllm.service_layer.ingest import chunks_key

TERMINAL = ("processed", "duplicate", "quarantined")


def _files(paths: list[str]) -> list[tuple[Path, Path]]:
    """``(file, base)`` pairs: a folder contributes every file below it, relative to itself."""
    found = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += [(f, path) for f in sorted(path.rglob("*")) if f.is_file() and not f.name.startswith(".")]
        elif path.is_file():
            found.append((path, path.parent))
        else:
            raise FileNotFoundError(f"no such file or folder: {raw}")
    return found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def cmd_ingest(args: Namespace) -> int:
    p, _ = running_platform(args)
    bucket = p.settings.raw_bucket
    files = _files(args.paths)
    uploaded: dict[str, str] = {}
    unchanged = 0
    with progress_bars(disable=args.json) as progress:
        task = progress.add_task("uploading", total=len(files))
        for path, base in files:
            key = f"{args.service}/{path.relative_to(base).as_posix()}"
            sha = _sha256(path)
            try:
                head = p.objects.head(bucket, key)
                if head.metadata.get("sha256") == sha:
                    unchanged += 1  # same bytes already uploaded: no new version, no new event
                    progress.advance(task)
                    continue
            except NotFoundError:
                pass
            info = p.objects.put_file(bucket, key, path, metadata={"service": args.service, "sha256": sha})
            uploaded[key] = info.version_id or info.etag
            progress.advance(task)
        if args.no_wait:
            pending: set[str] = set()
        else:
            pending = set(uploaded)
            task2 = progress.add_task("processing and indexing", total=len(pending))
            deadline = time.monotonic() + args.timeout
            while pending and time.monotonic() < deadline:
                # Done = processed (or quarantined) and, when it has chunks, searchable at that version:
                # a search right after `docllm ingest` returns must find what was uploaded.
                indexed = p.search.document_versions()
                for k, item in p.state.query(DOCS_PK, args.service + "/"):
                    if k not in pending or item.get("version_id") != uploaded[k] or item.get("status") not in TERMINAL:
                        continue
                    if item.get("chunk_count") and indexed.get(k) != uploaded[k]:
                        continue
                    pending.discard(k)
                    progress.advance(task2)
                if pending:
                    time.sleep(0.25)
    records = {k: DocumentRecord.model_validate(i) for k, i in p.state.query(DOCS_PK, args.service + "/")}
    mine = [records[k] for k in uploaded if k in records]
    summary: dict[str, Any] = {
        "files": len(files),
        "uploaded": len(uploaded),
        "unchanged": unchanged,
        "processed": sum(r.status == "processed" for r in mine),
        "duplicate": sum(r.status == "duplicate" for r in mine),
        "quarantined": [
            {"doc_key": r.doc_key, "reason_code": r.reason_code, "reason": r.reason}
            for r in mine
            if r.status == "quarantined"
        ],
        "pending": sorted(pending),
        "chunks": sum(r.chunk_count for r in mine),
    }
    if args.json:
        emit_json(summary)
    else:
        out.print(
            f"{summary['files']} files: {summary['uploaded']} uploaded, {unchanged} unchanged; "
            f"{summary['processed']} processed ({summary['chunks']} chunks), {summary['duplicate']} duplicates, "
            f"{len(summary['quarantined'])} quarantined, {len(pending)} still pending"
        )
        for q in summary["quarantined"]:
            out.print(f"  [yellow]quarantined[/yellow] {q['doc_key']}: {q['reason_code']} — {q['reason']}")
        if pending:
            out.print(
                f"[red]timed out after {args.timeout:.0f}s waiting for {len(pending)} document(s)[/red]; "
                "see docllm status"
            )
    return 1 if pending else 0


def cmd_docs(args: Namespace) -> int:
    p, _ = running_platform(args)
    records = [DocumentRecord.model_validate(i) for _, i in p.state.query(DOCS_PK, args.prefix or "")]
    if args.status:
        records = [r for r in records if r.status == args.status]
    if args.json:
        emit_json([r.model_dump(mode="json") for r in records])
        return 0
    t = Table("document", "status", "chunks", "tokens≈", "reason / duplicate of")
    for r in records:
        t.add_row(
            r.doc_key,
            r.status,
            str(r.chunk_count),
            str(r.token_estimate),
            r.reason or (f"duplicate of {r.duplicate_of}" if r.duplicate_of else ""),
        )
    out.print(t)
    return 0


def cmd_chunks(args: Namespace) -> int:
    p, _ = running_platform(args)
    try:
        body = p.objects.get(p.settings.processed_bucket, chunks_key(args.doc))
    except NotFoundError:
        console.print(f"[red]no chunks for {args.doc!r}[/red] (see docllm docs for its status)")
        return 1
    chunks = [json.loads(line) for line in body.decode("utf-8").split("\n") if line.strip()]
    if args.json:
        emit_json(chunks)
        return 0
    for c in chunks:
        out.print(
            f"[bold]#{c['position']}[/bold] {' > '.join(c['heading_path'])} "
            f"[dim]({c['token_estimate']} tokens, {c['chunk_id'][:12]})[/dim]"
        )
        out.print(c["text"], markup=False, highlight=False)
        out.print()
    return 0


def cmd_dedup_log(args: Namespace) -> int:
    from docllm.ingest.dedup import DedupLedger

    p, _ = running_platform(args)
    entries = DedupLedger(p.state).log(args.doc)
    if args.json:
        emit_json([e.model_dump(mode="json") for e in entries])
        return 0
    t = Table("document", "action", "duplicate of", "similarity", "detail")
    for e in entries:
        t.add_row(
            e.doc_key,
            e.action,
            e.duplicate_of or "",
            f"{e.similarity:.2f}" if e.similarity is not None else "",
            e.detail,
        )
    out.print(t)
    return 0


def cmd_search(args: Namespace) -> int:
    _, info = running_platform(args)
    status, body = api_get(info, data_dir(args), "/v1/search", {"q": args.query, "k": args.k, "service": args.service})
    if args.json:
        emit_json(body)
        return 0 if status == 200 else 2
    if status != 200:
        console.print(f"[red]error {status}[/red]: {body.get('message') if isinstance(body, dict) else body}")
        return 2
    for i, hit in enumerate(body["hits"], 1):
        out.print(
            f"[bold]{i}. {hit['doc_key']}[/bold] — {' > '.join(hit['heading_path'])} "
            f"[dim](score {hit['score']:.2f})[/dim]"
        )
        text = " ".join(hit["text"].split())
        out.print(f"   {text[:240]}{'…' if len(text) > 240 else ''}", markup=False, highlight=False)
    if not body["hits"]:
        out.print("no hits")
    return 0


def cmd_eval_retrieval(args: Namespace) -> int:
    from docllm.search.evaluation import evaluate, format_table, load_question_file, report_json

    p, _ = running_platform(args)
    report = evaluate(p.search, load_question_file(Path(args.file)))
    if args.json:
        print(report_json(report))
    else:
        out.print(format_table(report))
    return 0
