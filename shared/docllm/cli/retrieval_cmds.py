"""``eval retrieval``: recall@1/5/10 and MRR@k per question type, against the platform's index or a folder.

Two sources of the index:

* the running platform's (default): the same index ``/v1/search`` reads;
* ``--corpus DIR``: a temporary embedded index built from the Markdown pages under ``DIR``
  (``DIR/<service>/doc_source/*.md`` as in ``../shared/corpus/awsdocs``, or ``DIR/<service>/**/*.md``),
  chunked by the ingest pipeline and keyed ``<service>/<file name>`` as ``bench.search`` keys them.
  No platform is needed.

``--encoder VERSION|DIR`` compares BM25 alone with BM25 + that encoder on the same index and questions
and gives the retriever gate's verdict (``docllm.search.retriever_gate``); VERSION is a recorded
retriever (files fetched and checked against its record), DIR an encoder directory.

``docllm retriever train|list|show|verify`` (this module's ``COMMANDS``) drive the retriever stage
(``docllm.service_layer.retriever``); ``verify`` re-checks an approved retriever's signed manifest.

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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docllm.bootstrap import Platform
    from docllm.ports.search import SearchIndex
    from docllm.search.encoder import TextEncoder
    from docllm.search.sqlite_index import SqliteSearchIndex

from docllm.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    emit_json,
    line,
    lit,
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

        if getattr(args, "encoder", None):
            return _compare_with_encoder(args, platform, folder_index, questions, warnings)
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


def _encoder_named(p: Platform | None, name: str) -> TextEncoder:
    """A recorded retriever version (its verified files) or an encoder directory."""
    from docllm.search.encoder import TextEncoder
    from docllm.search.exceptions import EncoderArtifactError

    if Path(name).is_dir():
        try:
            return TextEncoder.load(Path(name))
        except EncoderArtifactError as e:
            raise CliError(str(e), EXIT_FAILED) from None
    if p is None:
        raise CliError(f"--encoder {name} is not a folder (a recorded version needs the platform)", EXIT_NOT_FOUND)
    from docllm.service_layer.retriever import encoder_cache_dir, find_retriever, load_verified

    record = find_retriever(p, name)
    if record is None:
        raise CliError(f"no retriever {name}: see docllm retriever list", EXIT_NOT_FOUND)
    return load_verified(p, record, encoder_cache_dir(p))


def _compare_with_encoder(
    args: Namespace,
    platform: Platform | None,
    folder_index: SqliteSearchIndex | None,
    questions: list[Any],
    warnings: list[str],
) -> int:
    """BM25 alone against BM25 + the encoder on the same questions: the retriever gate, by hand."""
    from docllm.search.retriever_gate import compare
    from docllm.search.sqlite_index import SqliteSearchIndex

    encoder = _encoder_named(platform, args.encoder)
    # The platform's index follows the active encoder; the comparison needs one that holds this one.
    index = folder_index
    if index is None:
        assert platform is not None and platform.settings.data_dir is not None
        index = SqliteSearchIndex(Path(platform.settings.data_dir) / "search")
    try:
        figures = compare(index, encoder, [q for q in questions if q.covered])
    finally:
        index.close()
    if args.json:
        emit_json({**figures.model_dump(mode="json"), "encoder": encoder.version, "warnings": warnings})
    else:
        out.print(
            f"{'':8} {'recall@10':>9} {'MRR@10':>7}\n"
            f"{'BM25':8} {figures.bm25_recall_at_10:9.3f} {figures.bm25_mrr_at_10:7.3f}\n"
            f"{'hybrid':8} {figures.hybrid_recall_at_10:9.3f} {figures.hybrid_mrr_at_10:7.3f}\n"
            f"{figures.questions} questions; encoder {encoder.version}: "
            f"{'passes' if figures.approved else 'fails'} the gate ({figures.reason})",
            markup=False,
        )
    return 0 if figures.approved else EXIT_FAILED


_JSON = (("--json",), {"action": "store_true", "help": 'machine-readable JSON on stdout (errors too: {"error": ...})'})

COMMANDS: tuple[tuple[Any, ...], ...] = (
    (
        ("retriever", "train"),
        "retrieval_cmds:cmd_retriever_train",
        "train a retriever (dual encoder) on a dataset version's train split with its tokenizer; "
        "the gate decides whether the index uses it",
        (
            (("--tokenizer",), {"metavar": "VERSION", "help": "tokenizer version (default: the newest recorded)"}),
            (("--dataset",), {"metavar": "VERSION", "help": "dataset version (default: the tokenizer's)"}),
            (("--epochs",), {"type": int, "help": "training epochs (default: EncoderSettings')"}),
            (("--questions-uri",), {"metavar": "URI", "help": "prefix holding questions.jsonl for the gate"}),
            (("--wait",), {"action": "store_true", "help": "wait for Retriever Trained (or the failure)"}),
            (("--timeout",), {"type": float, "default": 3600.0, "help": "seconds --wait waits (default: 3600)"}),
            _JSON,
        ),
    ),
    (
        ("retriever", "list"),
        "retrieval_cmds:cmd_retriever_list",
        "recorded retrievers: gate status, validation figures, which one the index uses",
        (_JSON,),
    ),
    (
        ("retriever", "show"),
        "retrieval_cmds:cmd_retriever_show",
        "one retriever's record: inputs (dataset, tokenizer, job), file sha256s, card, gate figures, manifest",
        ((("version",), {"help": "retriever version (enc-...)"}), _JSON),
    ),
    (
        ("retriever", "verify"),
        "retrieval_cmds:cmd_retriever_verify",
        "check an approved retriever's signed manifest and re-hash every file it names (exit 1 on a mismatch)",
        (
            (("version",), {"help": "retriever version (enc-...)"}),
            (
                ("--public-key",),
                {"help": "trust only these keys (PEM or keys/*.json; an auditor's own copy) instead of the store's"},
            ),
            _JSON,
        ),
    ),
)


def _newest_tokenizer(p: Platform) -> Any:
    from docllm.tokenizer.artifacts import TOKENIZERS_PK, TokenizerSummary

    found = [TokenizerSummary.model_validate(item) for _, item in p.state.query(TOKENIZERS_PK)]
    if not found:
        raise CliError("no tokenizer is recorded yet: docllm dataset build, then docllm train", EXIT_NOT_FOUND)
    return max(found, key=lambda t: t.created_at)


def cmd_retriever_train(args: Namespace) -> int:

    from docllm.cli.pipeline_cmds import _failure, _last_seq, _wait_for
    from docllm.events.contracts import RetrieverTrainingRequested, to_bus
    from docllm.tokenizer.artifacts import find_tokenizer

    p, _ = running_platform(args)
    if args.tokenizer:
        tokenizer = find_tokenizer(p.state, args.tokenizer)
        if tokenizer is None:
            raise CliError(f"no tokenizer {args.tokenizer} is recorded", EXIT_NOT_FOUND)
    else:
        tokenizer = _newest_tokenizer(p)
    settings: dict[str, Any] = {} if args.epochs is None else {"epochs": args.epochs}
    request = RetrieverTrainingRequested(
        dataset_version=args.dataset or tokenizer.dataset_version,
        tokenizer_version=tokenizer.version,
        settings=settings,
        questions_uri=args.questions_uri,
        family=None,
    )
    seq = _last_seq(p)
    p.bus.publish([to_bus(request)])
    if not args.wait:
        if args.json:
            emit_json({"request_id": request.request_id, **request.model_dump(mode="json")})
        else:
            out.print(f"asked for a retriever on {request.dataset_version} / {request.tokenizer_version}", markup=False)
        return 0
    body = _wait_for(p, seq, request.request_id, {"Retriever Trained"}, timeout_s=args.timeout, show=not args.json)
    if body is None:
        raise CliError(f"timed out after {args.timeout:.0f}s; see docllm retriever list", EXIT_FAILED)
    if body.get("detail-type") != "Retriever Trained":
        raise CliError(_failure(body), EXIT_FAILED)
    d = body["detail"]
    if args.json:
        emit_json(d)
    else:
        verdict = "approved: the index uses it" if d["approved"] else "rejected: the index keeps what it used"
        out.print(f"{d['retriever_version']} {verdict} ({d['reason']})", markup=False)
    return 0 if d["approved"] else EXIT_FAILED


def cmd_retriever_list(args: Namespace) -> int:
    from docllm.service_layer.retriever import active_retriever, list_retrievers

    p, _ = running_platform(args)
    active = active_retriever(p)
    rows = list_retrievers(p)
    if args.json:
        emit_json(
            {
                "active": active.version if active else None,
                "retrievers": [r.model_dump(mode="json", exclude={"card"}) for r in rows],
            }
        )
        return 0
    if not rows:
        out.print("no retriever recorded: docllm retriever train", markup=False)
        return 0
    for r in sorted(rows, key=lambda r: r.gated_at):
        mark = "*" if active is not None and r.version == active.version else " "
        m = r.metrics
        out.print(
            f"{mark} {r.version} {r.status:8} dataset {r.dataset_version} tokenizer {r.tokenizer_version} "
            f"recall@10 {m.get('bm25_recall_at_10', 0):.3f}->{m.get('hybrid_recall_at_10', 0):.3f} "
            f"MRR {m.get('bm25_mrr_at_10', 0):.3f}->{m.get('hybrid_mrr_at_10', 0):.3f}",
            markup=False,
        )
    return 0


def cmd_retriever_show(args: Namespace) -> int:
    from docllm.service_layer.retriever import active_retriever, find_retriever

    p, _ = running_platform(args)
    record = find_retriever(p, args.version)
    if record is None:
        raise CliError(f"no retriever {args.version}: see docllm retriever list", EXIT_NOT_FOUND)
    active = active_retriever(p)
    body = {**record.model_dump(mode="json"), "active": active is not None and active.version == record.version}
    if args.json:
        emit_json(body)
    else:
        import json

        out.print(json.dumps(body, indent=1, ensure_ascii=False), markup=False)
    return 0


def cmd_retriever_verify(args: Namespace) -> int:
    from docllm.exceptions import NotFoundError
    from docllm.ports.signer import load_public_keys
    from docllm.service_layer.retriever import verify_retriever

    p, _ = running_platform(args)
    try:
        keys = load_public_keys(args.public_key) if args.public_key else None
        report = verify_retriever(p, args.version, public_key=keys)
    except NotFoundError as e:
        raise CliError(str(e), EXIT_NOT_FOUND) from None
    if args.json:
        emit_json(report.model_dump(mode="json"))
    elif report.ok:
        out.print(line(lit("verified", "bold green"), " ", lit(report.manifest_uri or report.manifest_key)))
    else:
        out.print(line(lit("MISMATCH", "bold red"), " ", lit(report.manifest_uri or report.manifest_key)))
        for m in report.mismatches:
            out.print(line("  ", lit(m.kind, "bold"), " ", lit(m.subject), " ", lit(m.detail or "")))
            if m.expected or m.actual:
                out.print(line("    expected ", lit(m.expected or ""), "  actual ", lit(m.actual or "")))
    return 0 if report.ok else EXIT_FAILED
