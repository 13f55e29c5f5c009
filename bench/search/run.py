"""Retrieval benchmark: the embedded docllm index vs plain bm25s over the same chunks.

Indexes ``../shared/corpus/awsdocs`` (chunked by the real ingest code when
present, else the bench's heading splitter), then reports, side by side:
index build time, in-process query latency p50/p99 and dev-set quality
(recall@1/5/10, MRR@10, nDCG@10 on ``bench/search/devset.jsonl``).

Engines:

* ``docllm``       SQLite store + in-memory BM25, technical analyzer, field weights 1 (the default)
* ``docllm-title``  the same with title and headings weighted 2 (ablation of the field weights)
* ``bm25s``        bm25s ``lucene`` BM25, k1=1.2, b=0.75, its own tokenizer with English
                   stopwords and the Snowball English stemmer, title + headings + text as one field

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
from docllm.search.evaluation import DEPTH, Question, distinct_docs, load_question_file, ndcg
from docllm.search.sqlite_index import SqliteSearchIndex

DEVSET = Path(__file__).resolve().parent / "devset.jsonl"
IDENTSET = Path(__file__).resolve().parent / "identset.jsonl"
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
    search: Callable[[str], list[str]], questions: list[Question], ident: list[Question]
) -> dict[str, float]:
    """Dev-set quality and latency, plus recall/MRR on the identifier set as ``ident_*``."""
    out = _quality(search, questions)
    if ident:
        extra = _quality(search, ident)
        out.update({f"ident_{k}": v for k, v in extra.items() if not k.startswith("query_")})
    return out


def bench_docllm(
    chunks: list[list[IndexedChunk]],
    questions: list[Question],
    weights: tuple[float, float, float],
    ident: list[Question] | None = None,
) -> dict[str, Any]:
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
        reopened = SqliteSearchIndex(Path(tmp), weights=weights)
        start = time.perf_counter()
        reopened.warm_up()
        load_s = time.perf_counter() - start
        size = reopened.stats().bytes_on_disk
        result = _quality_sets(lambda q: [h.doc_key for h in reopened.search(q, k=CHUNK_DEPTH)], questions, ident or [])
        reopened.close()
        index.close()
    return {"build_s": build_s, "load_s": load_s, "disk_mb": size / 1e6, **result}


def bench_bm25s(
    chunks: list[list[IndexedChunk]], questions: list[Question], ident: list[Question] | None = None
) -> dict[str, Any]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
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
        **_quality_sets(search, questions, ident or []),
    }


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
    parser.add_argument("--no-http", action="store_true", help="skip the platform/HTTP part")
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
    corpus_mb = sum(d.path.stat().st_size for d in docs) / 1e6
    results: dict[str, dict[str, Any]] = {
        "docllm": bench_docllm(chunks, questions, (1.0, 1.0, 1.0), ident),
        "docllm-title": bench_docllm(chunks, questions, (2.0, 2.0, 1.0), ident),
        "bm25s": bench_bm25s(chunks, questions, ident),
    }
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
    print(f"{'metric':<20}" + "".join(f"{n:>14}" for n in names))
    for m in metrics:
        cells = (f"{results[n][m]:>14.3f}" if m in results[n] else f"{'–':>14}" for n in names)
        print(f"{m:<20}" + "".join(cells))
    for g in goals:
        print(f"goal {g['engine']} {g['metric']} {g['goal']}: {g['value']:.3f} {'met' if g['met'] else 'NOT MET'}")
    if detail:
        print(f"http detail: {json.dumps(detail, default=str)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
