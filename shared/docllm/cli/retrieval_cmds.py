"""``eval retrieval``: recall@1/5/10 and MRR@k per question type, against the platform's index or a folder.

Two sources of the index:

* the running platform's (default): the same index ``/v1/search`` reads;
* ``--corpus DIR``: a temporary embedded index built from the Markdown pages under ``DIR``
  (``DIR/<service>/doc_source/*.md`` as in ``../shared/corpus/awsdocs``, or ``DIR/<service>/**/*.md``),
  chunked by the ingest pipeline and keyed ``<service>/<file name>`` as ``bench.search`` keys them.
  No platform is needed.

Questions of type ``not_covered`` are left out of recall and MRR (``docllm.search.evaluation``); for
every question the command also asks whether an answer would abstain (the answer service's relevance
floor, ``docllm.answers.retrieve``), which is right for ``not_covered`` and wrong otherwise.
"""

from __future__ import annotations

import hashlib
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docllm.ports.search import SearchIndex
    from docllm.search.sqlite_index import SqliteSearchIndex

from docllm.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    emit_json,
    out,
    running_platform,
    warn,
)


def _service_of(doc_key: str) -> str:
    return doc_key.split("/", 1)[0]


def _pages(root: Path) -> Iterator[tuple[str, str, Path]]:
    """(service, doc key, path) of every Markdown page under ``root``, services being its folders."""
    for service_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        base = service_dir / "doc_source" if (service_dir / "doc_source").is_dir() else service_dir
        for path in sorted(base.rglob("*.md")):
            yield service_dir.name, f"{service_dir.name}/{path.name}", path


def build_folder_index(root: Path, directory: Path) -> SqliteSearchIndex:
    """An embedded index of the pages under ``root`` in ``directory`` (bulk, not durable)."""
    from docllm.ingest.pipeline import process_document
    from docllm.ports.search import IndexedChunk
    from docllm.search.sqlite_index import SqliteSearchIndex

    index = SqliteSearchIndex(directory, durable=False)
    batch: list[tuple[str, str, list[IndexedChunk]]] = []
    for service, doc_key, path in _pages(root):
        data = path.read_bytes()
        version = hashlib.sha256(data).hexdigest()[:16]
        result = process_document(data, doc_key=doc_key, doc_version=version, service=service)
        chunks = getattr(result, "chunks", None)
        if not chunks:
            continue
        batch.append(
            (
                doc_key,
                version,
                [
                    IndexedChunk(
                        chunk_id=c.chunk_id,
                        doc_key=c.doc_key,
                        service=c.service,
                        title=c.title,
                        heading_path=list(c.heading_path),
                        text=c.text,
                    )
                    for c in chunks
                ],
            )
        )
        if len(batch) >= 200:
            index.replace_documents(batch)
            batch = []
    index.replace_documents(batch)
    return index


def cmd_eval_retrieval(args: Namespace) -> int:
    from docllm.answers.retrieve import retrieve
    from docllm.search.evaluation import Question, evaluate, format_table, load_question_file

    name = args.set or args.file
    if not name:
        raise CliError("name a question file: docllm eval retrieval FILE (or --set FILE)", EXIT_USAGE)
    if args.set and args.file and args.set != args.file:
        raise CliError("give the question file once: FILE or --set FILE", EXIT_USAGE)
    # The platform first: without one, "start it" is the useful answer, whatever the file.
    platform = running_platform(args)[0] if args.corpus is None else None
    try:
        questions = load_question_file(Path(name))
    except IsADirectoryError:
        raise CliError(f"{name} is a folder, not a question file", EXIT_USAGE) from None
    with tempfile.TemporaryDirectory(prefix="docllm-eval-") as tmp:
        folder_index: SqliteSearchIndex | None = None
        if platform is not None:
            index: SearchIndex = platform.search
        else:
            root = Path(args.corpus)
            if not root.is_dir():
                raise CliError(f"--corpus {root} is not a folder", EXIT_NOT_FOUND)
            index = folder_index = build_folder_index(root, Path(tmp))
        ingested = {_service_of(k) for k in index.document_versions()}

        def about_ingested(q: Question) -> bool:
            return not q.covered or any(_service_of(k) in ingested for k in q.expected_doc_keys)

        off = [q for q in questions if not about_ingested(q)]
        warnings: list[str] = []
        if off and (len(off) * 2 > len(questions) or args.services_only):
            missing = sorted({_service_of(k) for q in off for k in q.expected_doc_keys})
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
            if not any(q.covered for q in questions):
                raise CliError(
                    f"no question of {name} is about an ingested service "
                    f"({', '.join(sorted(ingested)) or 'nothing is ingested'})",
                    EXIT_FAILED,
                )
        for w in warnings:
            warn(w)

        def abstains(q: Question) -> bool:
            return not retrieve(index, q.question, service=q.service, versions=dict).covered

        report = evaluate(index, questions, k=args.k, abstains=abstains)
        if folder_index is not None:
            folder_index.close()
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
