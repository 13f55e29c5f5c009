"""Retrieval benchmark: the embedded docllm index vs plain bm25s over the same chunks.

Indexes ``../shared/corpus/awsdocs`` (chunked by the real ingest code when
present, else the bench's heading splitter), then reports, side by side:
index build time, in-process query latency p50/p99 and dev-set quality
(recall@1/5/10, MRR@10, nDCG@10 on ``bench/search/devset.jsonl``).

Question sets: the dev set (heading-derived), the identifier set (``ident_*``) and the realistic
set (``real_*``, ``bench/search/realset.jsonl``, its covered questions; per type as
``real_<type>_recall@10`` / ``real_<type>_mrr@10``).

Engines (the lexical options of ``docllm.search.ranking``, one at a time, then together):

* ``docllm``            SQLite store + in-memory BM25, technical analyzer, field weights 1, no ranking option
                        (the engine before issue 18)
* ``+questions``        query-side: question words ("how do I", "can I") dropped (the default since issue 18)
* ``+docagg``           pages ranked by best chunk + 0.5 x their next two chunks
* ``+rm3``              RM3-style feedback: 10 terms from the first 10 chunks, original weight 0.5
* ``+fields``           field weights title 2, headings 2, body 1, code 0.5 (its own index)
* ``+combined``         question forms + page aggregation (the options that helped; see docs/decisions.md)
* ``+dense``            the learned dual encoder alone (``docllm.search.encoder``; RRF weight 1000 on its
                        ranking, so BM25 only breaks ties), question forms on
* ``+hybrid``           question forms + BM25 and the encoder fused by reciprocal rank (weights 1 : 0.25),
                        identifier-shaped queries by BM25 alone: the default of an index given an encoder;
                        ``+hybrid-0.5`` / ``+hybrid-1`` weigh the encoder 0.5 / 1, ``+hybrid-ungated``
                        fuses identifier queries too
* ``bm25s``             bm25s ``lucene`` BM25, k1=1.2, b=0.75, its own tokenizer with English
                        stopwords and the Snowball English stemmer, title + headings + text as one field
* ``bm25s-pages``       the same over whole pages (all chunks of a page as one document)

``--engines`` picks a subset (comma-separated names).

The encoder variants need a trained encoder: ``--encoder DIR`` (the artefacts of a
``docllm.jobs.retriever_job`` run), or ``--train-encoder`` to train one in the run from the
corpus's **train split** only (``docllm.dataset.versions.assign_split``; a SentencePiece tokenizer
is trained first, as the tokenizer job does), timed as ``train_s``. Without either they are skipped.

HTTP part (``bench.search.http_platform``; skip with ``--no-http``): the same
documents uploaded to a ``docllm up`` child process through the object store
(ingest and indexing run by events), the wall time until all are indexed, then
sequential ``GET /v1/search`` latency, an open-loop load run (``--rate`` req/s
for ``--duration`` s) and freshness (upload one new document, poll every 20 ms
until it is the first hit; ``--fresh-repeats`` times). Goals are checked at the end.

Run: ``.venv/bin/python -m bench.search.run`` (full: ~5 min incl. a 60 s load run) or ``--quick``
(two services, 50 req/s for 10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, track

from bench.search.corpus import AWSDOCS, SERVICES, chunk_document, chunker_name, documents
from bench.search.http_platform import HttpSettings, bench_http
from docllm.ports.search import IndexedChunk
from docllm.search.encoder import EncoderSettings, TextEncoder
from docllm.search.evaluation import DEPTH, Question, distinct_docs, load_question_file, ndcg
from docllm.search.ranking import Ranking
from docllm.search.sqlite_index import SqliteSearchIndex

DEVSET = Path(__file__).resolve().parent / "devset.jsonl"
IDENTSET = Path(__file__).resolve().parent / "identset.jsonl"
REALSET = Path(__file__).resolve().parent / "realset.jsonl"

FLAT = (1.0, 1.0, 1.0)
FIELDS = (2.0, 2.0, 1.0, 0.5)
#: (engine, field weights, ranking): the docllm variants, each one change from ``docllm``.
VARIANTS: tuple[tuple[str, tuple[float, ...], Ranking], ...] = (
    ("docllm", FLAT, Ranking()),
    ("+questions", FLAT, Ranking(question_forms=True)),
    ("+docagg", FLAT, Ranking(doc_aggregation=0.5)),
    ("+rm3", FLAT, Ranking(prf_terms=10, prf_docs=10, prf_weight=0.5)),
    ("+fields", FIELDS, Ranking()),
    ("+combined", FLAT, Ranking(question_forms=True, doc_aggregation=0.5)),
)
#: The variants that need the learned encoder (one index given it; same field weights).
ENCODER_VARIANTS: tuple[tuple[str, Ranking], ...] = (
    ("+dense", Ranking(question_forms=True, dense_weight=1000.0, dense_skips_identifiers=False)),
    ("+hybrid", Ranking(question_forms=True, dense_weight=0.25)),
    ("+hybrid-0.5", Ranking(question_forms=True, dense_weight=0.5)),
    ("+hybrid-1", Ranking(question_forms=True, dense_weight=1.0)),
    ("+hybrid-ungated", Ranking(question_forms=True, dense_weight=0.25, dense_skips_identifiers=False)),
)
QUICK_SERVICES = ("iam", "lambda")
CHUNK_DEPTH = 50

#: (metric, engine, comparison, threshold): the issue's goals.
GOALS: tuple[tuple[str, str, str, float], ...] = (
    ("query_p99_ms", "docllm", "<", 20.0),
    ("load_p99_ms", "docllm-http", "<", 100.0),
    ("load_errors", "docllm-http", "==", 0.0),
    ("fresh_max_s", "docllm-http", "<", 2.0),
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _quality(search: Callable[[str], list[str]], questions: list[Question]) -> dict[str, float]:
    latencies, ranks, ndcgs = [], [], []
    for q in questions:
        start = time.perf_counter()
        doc_keys = search(q.question)
        latencies.append((time.perf_counter() - start) * 1000.0)
        docs = distinct_docs(doc_keys, DEPTH)
        expected = set(q.expected_doc_keys)
        ranks.append(next((i + 1 for i, d in enumerate(docs) if d in expected), None))
        ndcgs.append(ndcg(docs, expected))
    n = len(questions)
    return {
        "recall@1": sum(1 for r in ranks if r and r <= 1) / n,
        "recall@5": sum(1 for r in ranks if r and r <= 5) / n,
        "recall@10": sum(1 for r in ranks if r and r <= 10) / n,
        "mrr@10": sum(1.0 / r for r in ranks if r) / n,
        "ndcg@10": statistics.fmean(ndcgs),
        "query_p50_ms": _percentile(latencies, 0.50),
        "query_p99_ms": _percentile(latencies, 0.99),
    }


def _quality_sets(
    search: Callable[[str], list[str]],
    questions: list[Question],
    ident: list[Question],
    real: list[Question] | None = None,
) -> dict[str, float]:
    """Dev-set quality and latency, plus recall/MRR on the identifier set as ``ident_*`` and on the
    realistic set as ``real_*`` (with ``real_query_p99_ms``, and per type ``real_<type>_recall@10``/``_mrr@10``)."""
    out = _quality(search, questions)
    if ident:
        extra = _quality(search, ident)
        out.update({f"ident_{k}": v for k, v in extra.items() if not k.startswith("query_")})
    if real:
        extra = _quality(search, real)
        out.update({f"real_{k}": v for k, v in extra.items() if k != "query_p50_ms"})
        for qtype in dict.fromkeys(q.type or "untyped" for q in real):
            part = _quality(search, [q for q in real if (q.type or "untyped") == qtype])
            out[f"real_{qtype}_recall@10"] = part["recall@10"]
            out[f"real_{qtype}_mrr@10"] = part["mrr@10"]
    return out


def bench_docllm(
    chunks: list[list[IndexedChunk]],
    questions: list[Question],
    weights: tuple[float, ...],
    ident: list[Question] | None = None,
    real: list[Question] | None = None,
    rankings: tuple[tuple[str, Ranking], ...] = (("docllm", Ranking()),),
    encoder: TextEncoder | None = None,
) -> dict[str, dict[str, Any]]:
    """One index with ``weights`` (and ``encoder``: its vectors are encoded when the index is
    loaded, so ``load_s`` includes encoding), measured once per ``(engine name, ranking)``."""
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        index = SqliteSearchIndex(Path(tmp), weights=weights, durable=False)
        start = time.perf_counter()
        batch: list[tuple[str, str, list[IndexedChunk]]] = []
        for doc_chunks in chunks:
            if doc_chunks:
                batch.append((doc_chunks[0].doc_key, "v1", doc_chunks))
            if len(batch) >= 200:
                index.replace_documents(batch)
                batch = []
        index.replace_documents(batch)
        build_s = time.perf_counter() - start
        # A fresh process opening the file pays this once (servers call warm_up at start).
        reopened = SqliteSearchIndex(Path(tmp), weights=weights, encoder=encoder)
        start = time.perf_counter()
        reopened.warm_up()
        load_s = time.perf_counter() - start
        size = reopened.stats().bytes_on_disk
        for name, ranking in rankings:
            reopened.ranking = ranking
            result = _quality_sets(
                lambda q: [h.doc_key for h in reopened.search(q, k=CHUNK_DEPTH)], questions, ident or [], real
            )
            out[name] = {
                "build_s": build_s,
                "load_s": load_s,
                "build_incl_encoding_s": build_s + load_s,
                "disk_mb": size / 1e6,
                **result,
            }
        reopened.close()
        index.close()
    return out


def bench_bm25s(
    chunks: list[list[IndexedChunk]],
    questions: list[Question],
    ident: list[Question] | None = None,
    real: list[Question] | None = None,
    *,
    pages: bool = False,
) -> dict[str, Any]:
    """bm25s over the chunks, or (``pages``) over whole pages: each page's chunks joined as one document."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    if pages:
        flat = [
            IndexedChunk(
                chunk_id=doc[0].doc_key,
                doc_key=doc[0].doc_key,
                service=doc[0].service,
                title=doc[0].title,
                heading_path=[],
                text="\n".join(f"{' > '.join(c.heading_path)}\n{c.text}" for c in doc),
            )
            for doc in chunks
            if doc
        ]
    else:
        flat = [c for doc in chunks for c in doc]
    start = time.perf_counter()
    corpus = [f"{c.title}\n{' > '.join(c.heading_path)}\n{c.text}" for c in flat]
    tokens = bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(tokens, show_progress=False)
    build_s = time.perf_counter() - start
    keys = [c.doc_key for c in flat]
    k = min(CHUNK_DEPTH, len(flat))

    def search(q: str) -> list[str]:
        qt = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False)
        docs, _ = retriever.retrieve(qt, k=k, show_progress=False, n_threads=1)
        return [keys[i] for i in docs[0]]

    return {
        "build_s": build_s,
        "load_s": float("nan"),
        "disk_mb": float("nan"),
        **_quality_sets(search, questions, ident or [], real),
    }


def train_bench_encoder(
    chunks: list[list[IndexedChunk]], settings: EncoderSettings, out_dir: Path
) -> tuple[TextEncoder, float]:
    """Train a tokenizer and an encoder on the chunks of the train split (as the tokenizer and
    retriever jobs do on a dataset version); return the loaded encoder and the seconds both took."""
    from docllm.dataset.versions import SplitRecord, assign_split
    from docllm.search.encoder_train import build_encoder
    from docllm.tokenizer.settings import TokenizerSettings
    from docllm.tokenizer.train import train_from_records

    records = [
        SplitRecord(chunk_id=c.chunk_id, doc_key=c.doc_key, text=c.text)
        for doc in chunks
        for c in doc
        if assign_split(c.doc_key) == "train"
    ]
    start = time.perf_counter()
    tok_settings = TokenizerSettings(vocab_size=8192, sample_bytes=8 * 2**20)
    with tempfile.TemporaryDirectory() as work:
        _, model = train_from_records(records, tok_settings, Path(work), split_bytes=sum(len(r.text) for r in records))
    build_encoder(
        records,
        model,
        settings,
        out_dir,
        dataset_version="bench-awsdocs-train-split",
        tokenizer_version="bench-tok-8192",
        train_documents=len({r.doc_key for r in records}),
    )
    return TextEncoder.load(out_dir), time.perf_counter() - start


def _check_goals(results: dict[str, dict[str, Any]], rate: float, duration_s: float) -> list[dict[str, Any]]:
    out = []
    for metric, engine, op, threshold in GOALS:
        value = results.get(engine, {}).get(metric)
        if value is None:
            continue
        met = value < threshold if op == "<" else value == threshold
        out.append({"engine": engine, "metric": metric, "value": value, "goal": f"{op} {threshold:g}", "met": met})
    http = results.get("docllm-http")
    if http is not None:
        # Throughput only counts as sustained if the run kept up with the offered rate.
        met = http["load_throughput_rps"] >= 0.98 * rate and http["load_duration_s"] >= duration_s
        out.append(
            {
                "engine": "docllm-http",
                "metric": "load_throughput_rps",
                "value": http["load_throughput_rps"],
                "goal": f">= {0.98 * rate:g}",
                "met": met,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="docllm embedded search vs bm25s on the awsdocs corpus")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"only {', '.join(QUICK_SERVICES)}, load 50 req/s for 10 s, 3 freshness probes: a smoke run",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    parser.add_argument("--devset", type=Path, default=DEVSET, help="question file (JSONL)")
    parser.add_argument(
        "--identset", type=Path, default=IDENTSET, help="identifier question file (JSONL; built by make_identset)"
    )
    parser.add_argument(
        "--realset", type=Path, default=REALSET, help="realistic question file (JSONL; built by make_realset)"
    )
    parser.add_argument(
        "--engines",
        default=None,
        help="comma-separated engines to run (default all): "
        + ", ".join([v[0] for v in VARIANTS] + [v[0] for v in ENCODER_VARIANTS] + ["bm25s", "bm25s-pages"]),
    )
    parser.add_argument("--no-http", action="store_true", help="skip the platform/HTTP part")
    parser.add_argument("--encoder", type=Path, default=None, help="trained encoder directory (retriever job)")
    parser.add_argument(
        "--train-encoder",
        type=Path,
        default=None,
        metavar="DIR",
        help="train a tokenizer and an encoder on the train split in this run, into DIR",
    )
    parser.add_argument("--encoder-epochs", type=int, default=EncoderSettings().epochs, help="with --train-encoder")
    parser.add_argument(
        "--encoder-hard-negatives", action="store_true", help="with --train-encoder: BM25-mined hard negatives"
    )
    parser.add_argument("--rate", type=float, default=None, help="load run requests/s (default 200; quick 50)")
    parser.add_argument("--duration", type=float, default=None, help="load run seconds (default 60; quick 10)")
    parser.add_argument("--fresh-repeats", type=int, default=None, help="freshness probes (default 5; quick 3)")
    parser.add_argument(
        "--docllm",
        type=Path,
        default=None,
        help="docllm executable to start for the HTTP part (default: the venv's); to compare a patched server",
    )
    args = parser.parse_args(argv)
    if not AWSDOCS.is_dir():
        print(f"skipped: {AWSDOCS} is not present", file=sys.stderr)
        return 0
    services = QUICK_SERVICES if args.quick else SERVICES
    http_settings = HttpSettings(
        rate=args.rate or (50.0 if args.quick else 200.0),
        duration_s=args.duration or (10.0 if args.quick else 60.0),
        fresh_repeats=args.fresh_repeats or (3 if args.quick else 5),
        docllm=args.docllm,
    )
    docs = documents(AWSDOCS, services)
    chunks = [chunk_document(d) for d in track(docs, description="chunking", disable=args.json)]
    prefixes = tuple(f"{s}/" for s in services)
    questions = [q for q in load_question_file(args.devset) if q.expected_doc_keys[0].startswith(prefixes)]
    ident = (
        [q for q in load_question_file(args.identset) if q.expected_doc_keys[0].startswith(prefixes)]
        if args.identset.exists()
        else []
    )
    # The realistic set's covered questions (not_covered ones have no page to find: `docllm eval retrieval`
    # reports their abstention).
    real = (
        [q for q in load_question_file(args.realset) if q.covered and q.expected_doc_keys[0].startswith(prefixes)]
        if args.realset.exists()
        else []
    )
    corpus_mb = sum(d.path.stat().st_size for d in docs) / 1e6
    wanted = set(args.engines.split(",")) if args.engines else None
    results: dict[str, dict[str, Any]] = {}
    for weights in dict.fromkeys(w for _, w, _ in VARIANTS):
        rankings = tuple((n, r) for n, w, r in VARIANTS if w == weights and (wanted is None or n in wanted))
        if rankings:
            results.update(bench_docllm(chunks, questions, weights, ident, real, rankings))
    encoder, train_s = None, float("nan")
    if args.encoder is not None:
        encoder = TextEncoder.load(args.encoder)
    elif args.train_encoder is not None:
        settings = EncoderSettings(epochs=args.encoder_epochs, hard_negatives=args.encoder_hard_negatives)
        encoder, train_s = train_bench_encoder(chunks, settings, args.train_encoder)
    enc_rankings = tuple((n, r) for n, r in ENCODER_VARIANTS if wanted is None or n in wanted)
    if encoder is not None and enc_rankings:
        measured = bench_docllm(chunks, questions, FLAT, ident, real, enc_rankings, encoder=encoder)
        for row in measured.values():
            row["train_s"] = train_s
        results.update(measured)
    if wanted is None or "bm25s" in wanted:
        results["bm25s"] = bench_bm25s(chunks, questions, ident, real)
    if wanted is None or "bm25s-pages" in wanted:
        results["bm25s-pages"] = bench_bm25s(chunks, questions, ident, real, pages=True)
    detail: dict[str, Any] = {}
    if not args.no_http:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=args.json,
        ) as bar:
            task = bar.add_task("platform: indexing", total=len(docs))

            def progress(_stage: str, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            http = bench_http(docs, questions, http_settings, progress)
        detail = http.pop("_detail")
        results["docllm-http"] = http
    goals = _check_goals(results, http_settings.rate, http_settings.duration_s)
    meta = {
        "chunker": chunker_name(),
        "documents": len(docs),
        "chunks": sum(map(len, chunks)),
        "corpus_mb": round(corpus_mb, 1),
        "questions": len(questions),
        "ident_questions": len(ident),
        "real_questions": len(real),
        "encoder": encoder.version if encoder is not None else None,
        "services": list(services),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "http_detail": detail,
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": results, "goals": goals}, indent=2))
        return 0
    print(
        f"corpus: {meta['documents']} docs, {meta['chunks']} chunks, {meta['corpus_mb']} MB "
        f"(chunker: {meta['chunker']}); dev set: {meta['questions']} questions, "
        f"identifier set: {meta['ident_questions']}; "
        f"{meta['cpus']} CPUs, load {meta['load_avg_1m']:.1f}"
    )
    names = list(results)
    metrics = list(dict.fromkeys(m for r in results.values() for m in r))
    print(f"{'metric':<28}" + "".join(f"{n:>14}" for n in names))
    for m in metrics:
        cells = (f"{results[n][m]:>14.3f}" if m in results[n] else f"{'–':>14}" for n in names)
        print(f"{m:<28}" + "".join(cells))
    for g in goals:
        print(f"goal {g['engine']} {g['metric']} {g['goal']}: {g['value']:.3f} {'met' if g['met'] else 'NOT MET'}")
    if detail:
        print(f"http detail: {json.dumps(detail, default=str)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
