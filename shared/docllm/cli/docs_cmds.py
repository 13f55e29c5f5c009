"""``ingest``, ``docs``, ``chunks``, ``dedup-log``, ``search``, ``eval retrieval``."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docllm.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    Col,
    api_get,
    data_dir,
    emit_json,
    ensure_running,
    line,
    lit,
    out,
    print_table,
    progress_bars,
    running_platform,
    visible,
    warn,
)
from docllm.exceptions import NotFoundError
from docllm.records import DOCS_PK, DocumentRecord
from docllm.service_layer.ingest import chunks_key, load_record, service_of

TERMINAL = ("processed", "duplicate", "quarantined")


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _utf8_name(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


MAX_KEY_BYTES = 1024  # S3's limit on an object key


def _checked_keys(files: list[tuple[Path, Path]], service: str, skipped: list[Skipped]) -> list[tuple[Path, Path]]:
    """Refuse two files that would land on one key (one would silently overwrite the other), and skip
    (and report) a file whose key is over S3's length limit, before anything is uploaded."""
    by_key: dict[str, Path] = {}
    kept: list[tuple[Path, Path]] = []
    for path, base in files:
        key = f"{service}/{path.relative_to(base).as_posix()}"
        if key in by_key:
            raise CliError(
                f"{visible(by_key[key])} and {visible(path)} would both be stored as {visible(key)}; "
                "ingest them in separate runs or under different --service names",
                EXIT_USAGE,
            )
        by_key[key] = path
        if len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
            skipped.append(Skipped(str(path), f"its key would be over S3's {MAX_KEY_BYTES}-byte limit"))
            continue
        kept.append((path, base))
    return kept


def collect_files(paths: list[str], *, follow_links: bool = False) -> tuple[list[tuple[Path, Path]], list[Skipped]]:
    """``(file, base)`` pairs to upload (a folder contributes every regular file below it, relative to
    itself; hidden files are left out) and what was skipped, with why.

    Inside a folder, a symbolic link whose target lies outside the folder is skipped (and reported)
    unless ``follow_links``: ingesting a folder never reads ``/etc/passwd`` or the platform's own
    API key through a link. Links to folders are not descended (without ``follow_links``); named
    pipes, devices and sockets are skipped. A path named on the command line must be a regular file
    or a folder (:class:`CliError` otherwise).
    """
    found: list[tuple[Path, Path]] = []
    skipped: list[Skipped] = []
    for raw in paths:
        path = Path(raw)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise CliError(f"no such file or folder: {visible(raw)}", EXIT_NOT_FOUND) from None
        except OSError as e:
            raise CliError(f"cannot read {visible(raw)}: {e.strerror or e}", EXIT_FAILED) from None
        if stat.S_ISDIR(st.st_mode):
            found += _walk(path, follow_links, skipped)
        elif stat.S_ISREG(st.st_mode):
            if not _utf8_name(path):
                raise CliError(f"{visible(raw)}: the file name is not valid UTF-8", EXIT_USAGE)
            found.append((path, path.parent))
        else:
            raise CliError(f"{visible(raw)} is {_kind(st.st_mode)}, not a file or folder to ingest", EXIT_USAGE)
    return found, skipped


def _walk(folder: Path, follow_links: bool, skipped: list[Skipped]) -> list[tuple[Path, Path]]:
    root = folder.resolve()
    found: list[tuple[Path, Path]] = []
    seen_dirs: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=follow_links):
        here = Path(dirpath)
        real = here.resolve()
        if real in seen_dirs:  # a link loop under --follow-links
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames.sort()
        for d in list(dirnames):
            sub = here / d
            if sub.is_symlink() and not follow_links:
                dirnames.remove(d)
                if not _inside(sub.resolve(), root):
                    skipped.append(Skipped(str(sub), f"link to {sub.resolve()} leaves the folder (--follow-links)"))
        for name in sorted(filenames):
            f = here / name
            if name.startswith("."):
                continue
            if not _utf8_name(f):
                skipped.append(
                    Skipped(
                        str(f).encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                        "the file name is not valid UTF-8",
                    )
                )
                continue
            if f.is_symlink() and not follow_links and not _inside(f.resolve(), root):
                skipped.append(Skipped(str(f), f"link to {f.resolve()} leaves the folder (--follow-links)"))
                continue
            try:
                st = f.stat()
            except OSError as e:  # a dangling link, a file gone meanwhile
                skipped.append(Skipped(str(f), e.strerror or str(e)))
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append(Skipped(str(f), f"{_kind(st.st_mode)}, not a regular file"))
                continue
            found.append((f, folder))
    return found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def cmd_ingest(args: Namespace) -> int:
    files, skipped = collect_files(args.paths, follow_links=args.follow_links)  # before the platform: bad paths fail
    files = _checked_keys(files, args.service, skipped)
    p, _ = running_platform(args)
    bucket = p.settings.raw_bucket
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
                ensure_running(p)  # a wait must not outlive the runtime that would answer it
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
            if not pending and uploaded:
                # Processing may ask for more: duplicates set free, documents whose boilerplate changed.
                # Done when that has settled too, so what `docs`/`search` show next is final.
                _settle(p, deadline)
    records = {k: DocumentRecord.model_validate(i) for k, i in p.state.query(DOCS_PK, args.service + "/")}
    # Finished documents only: one still pending is counted there, not twice.
    mine = [records[k] for k in uploaded if k in records and k not in pending]
    # Every duplicate relation this upload made: its documents that duplicate others, and documents
    # (of this upload or earlier ones) that now duplicate one of its documents.
    superseded = [
        {"doc_key": r.doc_key, "duplicate_of": r.duplicate_of}
        for r in records.values()
        if r.status == "duplicate" and (r.doc_key in uploaded or r.duplicate_of in uploaded)
    ]
    summary: dict[str, Any] = {
        "files": len(files),
        "uploaded": len(uploaded),
        "unchanged": unchanged,
        "processed": sum(r.status == "processed" for r in mine),
        "duplicate": sum(r.status == "duplicate" for r in mine),
        "superseded": superseded,
        "quarantined": [
            {"doc_key": r.doc_key, "reason_code": r.reason_code, "reason": r.reason}
            for r in mine
            if r.status == "quarantined"
        ],
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
        "pending": sorted(pending),
        "chunks": sum(r.chunk_count for r in mine),
    }
    if args.json:
        emit_json(summary)
    else:
        out.print(
            f"{summary['files']} files: {summary['uploaded']} uploaded, {unchanged} unchanged; "
            f"{summary['processed']} processed ({summary['chunks']} chunks), {summary['duplicate']} duplicates"
            f" (+{sum(d['doc_key'] not in uploaded for d in superseded)} earlier documents superseded), "
            f"{len(summary['quarantined'])} quarantined, {len(skipped)} skipped, {len(pending)} still pending",
            markup=False,
        )
        for q in summary["quarantined"]:
            out.print(
                line(
                    ("  quarantined ", "yellow"),
                    lit(q["doc_key"]),
                    ": ",
                    lit(q["reason_code"]),
                    " — ",
                    lit(q["reason"]),
                )
            )
        for d in superseded:
            out.print(line(("  duplicate ", "cyan"), lit(d["doc_key"]), " of ", lit(d["duplicate_of"])))
        for s in skipped:
            out.print(line(("  skipped ", "yellow"), lit(s.path), ": ", lit(s.reason)))
        if pending:
            out.print(
                line(
                    (f"timed out after {args.timeout:g}s waiting for {len(pending)} document(s)", "red"),
                    "; see docllm status",
                )
            )
    return EXIT_FAILED if pending else 0


def _settle(p: Any, deadline: float, quiet_s: float = 0.5) -> None:
    """Wait until the ingest and index stages have nothing left (queues and the outbox), for a moment."""
    from docllm.service_layer.outbox import pending

    q = p.local_queue
    names = [n for n in ("IngestQueue", "IndexQueue") if n in q.queues]
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        busy = bool(pending(p)) or any((st := q.stats(n)).visible or st.in_flight or st.delayed for n in names)
        if busy:
            quiet_since = None
        else:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_s:
                return
        time.sleep(0.1)


def cmd_docs(args: Namespace) -> int:
    p, _ = running_platform(args)
    records = [DocumentRecord.model_validate(i) for _, i in p.state.query(DOCS_PK, args.prefix or "")]
    if args.status:
        records = [r for r in records if r.status == args.status]
    if args.json:
        emit_json([r.model_dump(mode="json") for r in records])
        return 0
    print_table(
        [
            Col("document", copy=True),
            "status",
            Col("chunks", justify="right"),
            Col("tokens≈", justify="right"),
            "reason / duplicate of",
        ],
        (
            (
                r.doc_key,
                r.status,
                r.chunk_count,
                r.token_estimate,
                r.reason or (f"duplicate of {r.duplicate_of}" if r.duplicate_of else ""),
            )
            for r in records
        ),
    )
    return 0


def cmd_chunks(args: Namespace) -> int:
    p, _ = running_platform(args)
    record = load_record(p, args.doc)
    if record is None:
        raise CliError(f"no document {args.doc!r}; see docllm docs", EXIT_NOT_FOUND)
    chunks: list[dict[str, Any]] = []
    if record.status not in ("duplicate", "quarantined", "removed"):
        try:
            body = p.objects.get(p.settings.processed_bucket, chunks_key(args.doc))
        except NotFoundError:
            body = b""
        chunks = [json.loads(ln) for ln in body.decode("utf-8").split("\n") if ln.strip()]
    if args.json:
        emit_json(
            {
                "doc_key": record.doc_key,
                "status": record.status,
                "duplicate_of": record.duplicate_of,
                "reason": record.reason,
                "chunks": chunks,
            }
        )
        return 0
    if record.status == "duplicate":
        # Its content is indexed once, under the document it duplicates.
        out.print(
            line(
                lit(record.doc_key),
                " is a duplicate of ",
                lit(record.duplicate_of, "bold"),
                "; its chunks: ",
                ("docllm chunks ", "dim"),
                lit(record.duplicate_of, "dim"),
            )
        )
        return 0
    if not chunks:
        out.print(
            line(
                lit(record.doc_key),
                f" has no chunks ({record.status}",
                *((": ", lit(record.reason)) if record.reason else ()),
                ")",
            )
        )
        return 0
    for c in chunks:
        out.print(
            line(
                (f"#{c['position']} ", "bold"),
                lit(" > ".join(c["heading_path"])),
                (f" ({c['token_estimate']} tokens, ", "dim"),
                lit(str(c["chunk_id"])[:12], "dim"),
                (")", "dim"),
            )
        )
        out.print(lit(c["text"], multiline=True))
        out.print()
    return 0


def cmd_dedup_log(args: Namespace) -> int:
    from docllm.ingest.dedup import DedupLedger

    p, _ = running_platform(args)
    entries = DedupLedger(p.state).log(args.doc)
    if args.json:
        emit_json([e.model_dump(mode="json") for e in entries])
        return 0
    print_table(
        [
            Col("document", copy=True),
            "action",
            Col("duplicate of", copy=True),
            Col("similarity", justify="right"),
            "detail",
        ],
        (
            (
                e.doc_key,
                e.action,
                e.duplicate_of or "",
                f"{e.similarity:.2f}" if e.similarity is not None else "",
                e.detail,
            )
            for e in entries
        ),
    )
    return 0


def cmd_search(args: Namespace) -> int:
    _, info = running_platform(args)
    status, body = api_get(info, data_dir(args), "/v1/search", {"q": args.query, "k": args.k, "service": args.service})
    if status != 200:
        message = body.get("message") if isinstance(body, dict) else body
        raise CliError(f"the search was refused ({status}): {message}", EXIT_NOT_FOUND if status == 404 else EXIT_USAGE)
    if args.json:
        emit_json(body)
        return 0
    for i, hit in enumerate(body["hits"], 1):
        out.print(
            line(
                (f"{i}. ", "bold"),
                lit(hit["doc_key"], "bold"),
                " — ",
                lit(" > ".join(hit["heading_path"])),
                (f" (score {hit['score']:.2f})", "dim"),
            )
        )
        text = " ".join(hit["text"].split())
        out.print(line("   ", lit(text[:240]), "…" if len(text) > 240 else ""))
    if not body["hits"]:
        out.print("no hits", markup=False)
    return 0


def cmd_eval_retrieval(args: Namespace) -> int:
    from docllm.search.evaluation import evaluate, format_table, load_question_file

    p, _ = running_platform(args)
    try:
        questions = load_question_file(Path(args.file))
    except IsADirectoryError:
        raise CliError(f"{args.file} is a folder, not a question file", EXIT_USAGE) from None
    ingested = {service_of(k) for k in p.search.document_versions()}

    def about_ingested(q: Any) -> bool:
        return any(service_of(k) in ingested for k in q.expected_doc_keys)

    off = [q for q in questions if not about_ingested(q)]
    warnings: list[str] = []
    if off and (len(off) * 2 > len(questions) or args.services_only):
        missing = sorted({service_of(k) for q in off for k in q.expected_doc_keys})
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        warnings.append(
            f"{len(off)} of {len(questions)} questions expect documents of services not ingested ({shown}); "
            + (
                "they are left out (--services-only)"
                if args.services_only
                else "they cannot be found: --services-only scores only the others"
            )
        )
    if args.services_only:
        questions = [q for q in questions if about_ingested(q)]
        if not questions:
            raise CliError(
                f"no question of {args.file} is about an ingested service "
                f"({', '.join(sorted(ingested)) or 'nothing is ingested'})",
                EXIT_FAILED,
            )
    for w in warnings:
        warn(w)
    report = evaluate(p.search, questions)
    if args.json:
        emit_json(
            {
                **report.model_dump(mode="json"),
                "excluded_questions": len(off) if args.services_only else 0,
                "warnings": warnings,
            }
        )
    else:
        out.print(format_table(report), markup=False)
    return 0
