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

Run: ``.venv/bin/python -m bench.search.run`` (full, ~1 min) or ``--quick`` (two services).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docllm.ports.search import IndexedChunk
from docllm.search.evaluation import DEPTH, Question, distinct_docs, load_question_file, ndcg
from docllm.search.sqlite_index import SqliteSearchIndex
from rich.progress import track

from bench.search.corpus import AWSDOCS, SERVICES, chunk_document, chunker_name, documents

DEVSET = Path(__file__).resolve().parent / "devset.jsonl"
QUICK_SERVICES = ("iam", "lambda")
CHUNK_DEPTH = 50


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


def bench_docllm(
    chunks: list[list[IndexedChunk]], questions: list[Question], weights: tuple[float, float, float]
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
        result = _quality(lambda q: [h.doc_key for h in reopened.search(q, k=CHUNK_DEPTH)], questions)
        reopened.close()
        index.close()
    return {"build_s": build_s, "load_s": load_s, "disk_mb": size / 1e6, **result}


def bench_bm25s(chunks: list[list[IndexedChunk]], questions: list[Question]) -> dict[str, Any]:
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
        **_quality(search, questions),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="docllm embedded search vs bm25s on the awsdocs corpus")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_SERVICES)}: a smoke run")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    parser.add_argument("--devset", type=Path, default=DEVSET, help="question file (JSONL)")
    args = parser.parse_args(argv)
    if not AWSDOCS.is_dir():
        print(f"skipped: {AWSDOCS} is not present", file=sys.stderr)
        return 0
    services = QUICK_SERVICES if args.quick else SERVICES
    docs = documents(AWSDOCS, services)
    chunks = [chunk_document(d) for d in track(docs, description="chunking", disable=args.json)]
    prefixes = tuple(f"{s}/" for s in services)
    questions = [q for q in load_question_file(args.devset) if q.expected_doc_keys[0].startswith(prefixes)]
    corpus_mb = sum(d.path.stat().st_size for d in docs) / 1e6
    results = {
        "docllm": bench_docllm(chunks, questions, (1.0, 1.0, 1.0)),
        "docllm-title": bench_docllm(chunks, questions, (2.0, 2.0, 1.0)),
        "bm25s": bench_bm25s(chunks, questions),
    }
    meta = {
        "chunker": chunker_name(),
        "documents": len(docs),
        "chunks": sum(map(len, chunks)),
        "corpus_mb": round(corpus_mb, 1),
        "questions": len(questions),
        "services": list(services),
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
        return 0
    print(
        f"corpus: {meta['documents']} docs, {meta['chunks']} chunks, {meta['corpus_mb']} MB "
        f"(chunker: {meta['chunker']}); dev set: {meta['questions']} questions"
    )
    names = list(results)
    metrics = list(next(iter(results.values())))
    print(f"{'metric':<14}" + "".join(f"{n:>14}" for n in names))
    for m in metrics:
        print(f"{m:<14}" + "".join(f"{results[n][m]:>14.3f}" for n in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
