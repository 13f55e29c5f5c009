"""Document-level retrieval evaluation: recall@1/5/10, MRR@10 and nDCG@10 over a question file.

A question file is JSONL, one ``{"question": ..., "expected_doc_keys": [...]}``
per line, optionally with ``id`` and ``type`` (``bench/search/realset.jsonl``). Hits are reduced
to documents by first occurrence (a document found by three chunks counts once, at its best
rank), because the question asks for a page, not a passage; metrics look at the first ``k``
distinct documents (default 10).

Questions of type ``not_covered`` (the documents do not answer them; ``expected_doc_keys`` is
empty) are **left out of recall, MRR and nDCG** and counted apart: when the caller passes an
``abstains`` function (the answer service's relevance floor), the report gives the share of them
on which an answer would abstain, and the share of covered questions on which it would abstain
wrongly. Per-type figures are given when the questions have types.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from docllm.ports.search import SearchIndex
from docllm.search.exceptions import DevsetFormatError

CUTOFFS = (1, 5, 10)
DEPTH = 10
# Chunks fetched per question: documents often own several of the top chunks,
# so 10 chunks would give fewer than 10 distinct documents.
_CHUNK_DEPTH = 50


NOT_COVERED = "not_covered"
"""The question type whose answer is not in the documents (empty ``expected_doc_keys``)."""


class Question(BaseModel):
    question: str = Field(min_length=1)
    expected_doc_keys: list[str]
    service: str | None = None
    id: str | None = None
    type: str | None = None

    @model_validator(mode="after")
    def _expected_unless_not_covered(self) -> Question:
        if self.type == NOT_COVERED and self.expected_doc_keys:
            raise ValueError(f"a {NOT_COVERED} question expects no document")
        if self.type != NOT_COVERED and not self.expected_doc_keys:
            raise ValueError(f"expected_doc_keys is empty (only a {NOT_COVERED} question may have none)")
        return self

    @property
    def covered(self) -> bool:
        return self.type != NOT_COVERED

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question is blank")
        return value


class QuestionResult(BaseModel):
    question: str
    expected_doc_keys: list[str]
    retrieved_doc_keys: list[str] = Field(description="top k distinct documents, best first")
    first_relevant_rank: int | None = Field(description="1-based rank of the first expected document")
    ndcg: float
    id: str | None = None
    type: str | None = None
    all_found: bool = Field(default=False, description="every expected document is in the top k")
    abstained: bool | None = Field(default=None, description="an answer would abstain (None: not asked)")


class TypeReport(BaseModel):
    """The metrics of one question type (covered types), or the abstention of ``not_covered``."""

    questions: int
    recall_at_1: float | None = None
    recall_at_5: float | None = None
    recall_at_10: float | None = None
    mrr_at_10: float | None = None
    all_at_10: float | None = Field(default=None, description="share with every expected document in the top k")
    abstain_rate: float | None = Field(
        default=None, description="share on which an answer would abstain (right for not_covered, wrong otherwise)"
    )


class RetrievalReport(BaseModel):
    questions: int = Field(description="questions scored for recall (not_covered ones are not)")
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr_at_10: float
    ndcg_at_10: float
    mean_latency_ms: float
    details: list[QuestionResult]
    k: int = DEPTH
    not_covered_questions: int = 0
    by_type: dict[str, TypeReport] = Field(default_factory=dict)


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


def _recall(details: Sequence[QuestionResult], k: int) -> float:
    if not details:
        return 0.0
    return sum(1 for d in details if d.first_relevant_rank is not None and d.first_relevant_rank <= k) / len(details)


def _mrr(details: Sequence[QuestionResult]) -> float:
    return sum(1.0 / d.first_relevant_rank for d in details if d.first_relevant_rank) / len(details) if details else 0.0


def _type_report(details: Sequence[QuestionResult]) -> TypeReport:
    asked = [d.abstained for d in details if d.abstained is not None]
    rate = sum(asked) / len(asked) if asked else None
    if details and details[0].type == NOT_COVERED:
        return TypeReport(questions=len(details), abstain_rate=rate)
    return TypeReport(
        questions=len(details),
        recall_at_1=_recall(details, 1),
        recall_at_5=_recall(details, 5),
        recall_at_10=_recall(details, 10),
        mrr_at_10=_mrr(details),
        all_at_10=sum(d.all_found for d in details) / len(details) if details else 0.0,
        abstain_rate=rate,
    )


def evaluate(
    index: SearchIndex,
    questions: Sequence[Question],
    *,
    k: int = DEPTH,
    abstains: Callable[[Question], bool] | None = None,
) -> RetrievalReport:
    """Run every question against ``index`` and score the first ``k`` distinct documents it returns.

    Recall@c is the fraction of covered questions with at least one expected document in the top
    ``min(c, k)`` (the usual definition for single-answer questions); MRR is cut at ``k``.
    ``abstains(question)`` (optional) says whether an answer would abstain on it.
    """
    details = []
    total_ms = 0.0
    chunk_depth = max(_CHUNK_DEPTH, 5 * k)
    for q in questions:
        start = time.perf_counter()
        hits = index.search(q.question, k=chunk_depth, service=q.service)
        total_ms += (time.perf_counter() - start) * 1000.0
        docs = distinct_docs([h.doc_key for h in hits], k)
        expected = set(q.expected_doc_keys)
        rank = next((i + 1 for i, d in enumerate(docs) if d in expected), None)
        details.append(
            QuestionResult(
                question=q.question,
                expected_doc_keys=q.expected_doc_keys,
                retrieved_doc_keys=docs,
                first_relevant_rank=rank,
                ndcg=ndcg(docs, expected, k),
                id=q.id,
                type=q.type,
                all_found=bool(expected) and expected <= set(docs),
                abstained=abstains(q) if abstains is not None else None,
            )
        )
    covered = [d for d in details if d.type != NOT_COVERED]
    n = len(covered)
    by_type: dict[str, TypeReport] = {}
    if any(d.type for d in details):
        for t in dict.fromkeys(d.type or "untyped" for d in details):
            by_type[t] = _type_report([d for d in details if (d.type or "untyped") == t])
    return RetrievalReport(
        questions=n,
        recall_at_1=_recall(covered, 1),
        recall_at_5=_recall(covered, 5),
        recall_at_10=_recall(covered, 10),
        mrr_at_10=_mrr(covered),
        ndcg_at_10=sum(d.ndcg for d in covered) / n if n else 0.0,
        mean_latency_ms=total_ms / len(details) if details else 0.0,
        details=details,
        k=k,
        not_covered_questions=len(details) - n,
        by_type=by_type,
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
        *([("not covered", str(report.not_covered_questions))] if report.not_covered_questions else []),
        *([("k", str(report.k))] if report.k != DEPTH else []),
        ("recall@1", f"{report.recall_at_1:.3f}"),
        ("recall@5", f"{report.recall_at_5:.3f}"),
        ("recall@10", f"{report.recall_at_10:.3f}"),
        ("MRR@10", f"{report.mrr_at_10:.3f}"),
        ("nDCG@10", f"{report.ndcg_at_10:.3f}"),
        ("latency ms", f"{report.mean_latency_ms:.2f}"),
    ]
    table = "\n".join([f"{'metric':<15} value"] + [f"{k:<15} {v}" for k, v in rows])
    if report.by_type:
        table += "\n\n" + format_by_type(report)
    return table


def format_by_type(report: RetrievalReport) -> str:
    """Per-type rows: recall@1/5/10, MRR and all-found for covered types; abstention for all.

    Examples
    --------
    >>> r = RetrievalReport(questions=1, recall_at_1=1, recall_at_5=1, recall_at_10=1, mrr_at_10=1,
    ...                     ndcg_at_10=1, mean_latency_ms=0.5, details=[],
    ...                     by_type={"yesno": TypeReport(questions=1, recall_at_1=1, recall_at_5=1,
    ...                              recall_at_10=1, mrr_at_10=1, all_at_10=1)})
    >>> print(format_by_type(r).splitlines()[1])
    yesno             1   1.000   1.000   1.000   1.000   1.000        –
    """

    def cell(v: float | None) -> str:
        return f"{v:>8.3f}" if v is not None else f"{'–':>8}"

    head = f"{'type':<14}{'n':>5}{'r@1':>8}{'r@5':>8}{'r@10':>8}{'MRR':>8}{'all@k':>8}{'abstain':>9}"
    rows = [
        f"{t:<14}{r.questions:>5}{cell(r.recall_at_1)}{cell(r.recall_at_5)}{cell(r.recall_at_10)}"
        f"{cell(r.mrr_at_10)}{cell(r.all_at_10)} {cell(r.abstain_rate)}"
        for t, r in report.by_type.items()
    ]
    return "\n".join([head, *rows])


def report_json(report: RetrievalReport) -> str:
    return json.dumps(report.model_dump(), indent=2)
