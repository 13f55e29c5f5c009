"""Document-level retrieval evaluation: recall@1/5/10, MRR@10 and nDCG@10 over a question file.

A question file is JSONL, one ``{"question": ..., "expected_doc_keys": [...]}``
per line. Hits are reduced to documents by first occurrence (a document
found by three chunks counts once, at its best rank), because the question
asks for a page, not a passage.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator

from docllm.ports.search import SearchIndex
from docllm.search.exceptions import DevsetFormatError

CUTOFFS = (1, 5, 10)
DEPTH = 10
# Chunks fetched per question: documents often own several of the top chunks,
# so 10 chunks would give fewer than 10 distinct documents.
_CHUNK_DEPTH = 50


class Question(BaseModel):
    question: str = Field(min_length=1)
    expected_doc_keys: list[str] = Field(min_length=1)
    service: str | None = None

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question is blank")
        return value


class QuestionResult(BaseModel):
    question: str
    expected_doc_keys: list[str]
    retrieved_doc_keys: list[str] = Field(description="top 10 distinct documents, best first")
    first_relevant_rank: int | None = Field(description="1-based rank of the first expected document")
    ndcg: float


class RetrievalReport(BaseModel):
    questions: int
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr_at_10: float
    ndcg_at_10: float
    mean_latency_ms: float
    details: list[QuestionResult]


def load_questions(lines: Iterable[str]) -> list[Question]:
    """Parse JSONL question lines; blank lines are skipped.

    Raises
    ------
    DevsetFormatError
        With the 1-based line number of the first bad line.

    Examples
    --------
    >>> load_questions(['{"question": "bucket?", "expected_doc_keys": ["s3/a.md"]}'])[0].question
    'bucket?'
    """
    out = []
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(Question.model_validate_json(line))
        except ValidationError as e:
            raise DevsetFormatError(no, str(e).replace("\n", " ")) from e
    if not out:
        raise DevsetFormatError(0, "no questions")
    return out


def load_question_file(path: Path) -> list[Question]:
    with path.open(encoding="utf-8") as f:
        return load_questions(f)


def distinct_docs(doc_keys: Sequence[str], limit: int) -> list[str]:
    """First-occurrence de-duplication, cut at ``limit``.

    Examples
    --------
    >>> distinct_docs(["a", "b", "a", "c"], 2)
    ['a', 'b']
    """
    return list(dict.fromkeys(doc_keys))[:limit]


def ndcg(retrieved: Sequence[str], expected: set[str], depth: int = DEPTH) -> float:
    """Binary-relevance nDCG over the first ``depth`` retrieved documents.

    Examples
    --------
    >>> round(ndcg(["x", "a"], {"a"}), 4)
    0.6309
    """
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(retrieved[:depth]) if d in expected)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(expected), depth)))
    return dcg / ideal if ideal else 0.0


def evaluate(index: SearchIndex, questions: Sequence[Question]) -> RetrievalReport:
    """Run every question against ``index`` and score the documents it returns.

    Recall@k is the fraction of questions with at least one expected document
    in the top k (the usual definition for single-answer questions).
    """
    details = []
    total_ms = 0.0
    for q in questions:
        start = time.perf_counter()
        hits = index.search(q.question, k=_CHUNK_DEPTH, service=q.service)
        total_ms += (time.perf_counter() - start) * 1000.0
        docs = distinct_docs([h.doc_key for h in hits], DEPTH)
        expected = set(q.expected_doc_keys)
        rank = next((i + 1 for i, d in enumerate(docs) if d in expected), None)
        details.append(
            QuestionResult(
                question=q.question,
                expected_doc_keys=q.expected_doc_keys,
                retrieved_doc_keys=docs,
                first_relevant_rank=rank,
                ndcg=ndcg(docs, expected),
            )
        )
    n = len(details)

    def recall(k: int) -> float:
        return sum(1 for d in details if d.first_relevant_rank is not None and d.first_relevant_rank <= k) / n

    return RetrievalReport(
        questions=n,
        recall_at_1=recall(1),
        recall_at_5=recall(5),
        recall_at_10=recall(10),
        mrr_at_10=sum(1.0 / d.first_relevant_rank for d in details if d.first_relevant_rank) / n,
        ndcg_at_10=sum(d.ndcg for d in details) / n,
        mean_latency_ms=total_ms / n,
        details=details,
    )


def format_table(report: RetrievalReport) -> str:
    """A small human-readable table of the aggregate metrics.

    Examples
    --------
    >>> r = RetrievalReport(questions=1, recall_at_1=1, recall_at_5=1, recall_at_10=1, mrr_at_10=1,
    ...                     ndcg_at_10=1, mean_latency_ms=0.5, details=[])
    >>> print(format_table(r).splitlines()[0])
    metric          value
    """
    rows = [
        ("questions", str(report.questions)),
        ("recall@1", f"{report.recall_at_1:.3f}"),
        ("recall@5", f"{report.recall_at_5:.3f}"),
        ("recall@10", f"{report.recall_at_10:.3f}"),
        ("MRR@10", f"{report.mrr_at_10:.3f}"),
        ("nDCG@10", f"{report.ndcg_at_10:.3f}"),
        ("latency ms", f"{report.mean_latency_ms:.2f}"),
    ]
    return "\n".join([f"{'metric':<15} value"] + [f"{k:<15} {v}" for k, v in rows])


def report_json(report: RetrievalReport) -> str:
    return json.dumps(report.model_dump(), indent=2)
