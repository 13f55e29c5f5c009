"""The retriever's gate: an encoder is used by the index only if BM25 + encoder is not worse than BM25 alone.

Issue 18 asks that the learned component be "evaluated and gated before the index uses it". The gate
compares two rankings of one index on one question set: BM25 alone (``sqlite_index.DEFAULT_RANKING``)
and the hybrid the index would use with the encoder (``sqlite_index.HYBRID_RANKING``). It passes when
the hybrid's recall@10 **and** MRR@10 are each at least BM25's: an encoder that only moves answers
around, or trades recall for MRR, is not worth its cost and its opacity.

Which questions: never the realistic set the figures in docs/benchmarks.md are reported on (choosing
on it would make those figures optimistic). The retriever job gates on questions made by rule from
the dataset's **validation split** (:func:`validation_questions`: documents the encoder never saw in
training), over an index of the dataset's documents; ``docllm eval retrieval --encoder`` runs the same
comparison on any question file a person holds back for validation.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from docllm.dataset.versions import SplitRecord
from docllm.ports.search import IndexedChunk
from docllm.search.evaluation import Question, RetrievalReport, evaluate

if TYPE_CHECKING:
    from docllm.search.encoder import TextEncoder
    from docllm.search.sqlite_index import SqliteSearchIndex

#: Questions the job draws from the validation split at most (enough for a stable MRR, a minute to score).
MAX_VALIDATION_QUESTIONS = 400

#: Question forms of a validation heading. Deliberately not the training forms of
#: ``encoder_train._QUESTION_FORMS``: a gate asking what the encoder was drilled on would flatter it.
_VALIDATION_FORMS = ("where can I read about {h}", "tell me about {h}", "I need help with {h}")


class GateFigures(BaseModel):
    """What the gate compared, and its verdict."""

    questions: int
    bm25_recall_at_10: float
    bm25_mrr_at_10: float
    hybrid_recall_at_10: float
    hybrid_mrr_at_10: float
    approved: bool
    reason: str
    by_type: dict[str, dict[str, float]] = Field(default_factory=dict, description="hybrid minus BM25 per type")

    def metrics(self) -> dict[str, float]:
        return {
            "questions": float(self.questions),
            "bm25_recall_at_10": self.bm25_recall_at_10,
            "bm25_mrr_at_10": self.bm25_mrr_at_10,
            "hybrid_recall_at_10": self.hybrid_recall_at_10,
            "hybrid_mrr_at_10": self.hybrid_mrr_at_10,
        }


def decide(bm25: RetrievalReport, hybrid: RetrievalReport) -> GateFigures:
    """The verdict on two reports of the same questions.

    >>> from docllm.search.evaluation import RetrievalReport
    >>> r = lambda rec, mrr: RetrievalReport.model_construct(questions=10, recall_at_10=rec, mrr_at_10=mrr,
    ...                                                        by_type={})
    >>> decide(r(0.9, 0.7), r(0.9, 0.71)).approved, decide(r(0.9, 0.7), r(0.95, 0.69)).approved
    (True, False)
    """
    b_rec, h_rec = float(bm25.recall_at_10), float(hybrid.recall_at_10)
    b_mrr, h_mrr = float(bm25.mrr_at_10), float(hybrid.mrr_at_10)
    worse = []
    if h_rec < b_rec:
        worse.append(f"recall@10 {h_rec:.3f} < BM25's {b_rec:.3f}")
    if h_mrr < b_mrr:
        worse.append(f"MRR@10 {h_mrr:.3f} < BM25's {b_mrr:.3f}")
    approved = not worse and bm25.questions > 0
    if bm25.questions == 0:
        reason = "no validation question: an encoder cannot be shown to help"
    elif worse:
        reason = "hybrid worse than BM25 alone: " + "; ".join(worse)
    else:
        reason = f"hybrid recall@10 {h_rec:.3f} ≥ {b_rec:.3f} and MRR@10 {h_mrr:.3f} ≥ {b_mrr:.3f} (BM25 alone)"
    by_type: dict[str, dict[str, float]] = {}
    for name, h in (hybrid.by_type or {}).items():
        b = (bm25.by_type or {}).get(name)
        if b is not None and h.questions and h.recall_at_10 is not None and b.recall_at_10 is not None:
            by_type[name] = {
                "questions": float(h.questions),
                "recall_at_10": round(h.recall_at_10 - b.recall_at_10, 4),
                "mrr_at_10": round((h.mrr_at_10 or 0.0) - (b.mrr_at_10 or 0.0), 4),
            }
    return GateFigures(
        questions=bm25.questions,
        bm25_recall_at_10=round(b_rec, 4),
        bm25_mrr_at_10=round(b_mrr, 4),
        hybrid_recall_at_10=round(h_rec, 4),
        hybrid_mrr_at_10=round(h_mrr, 4),
        approved=approved,
        reason=reason,
        by_type=by_type,
    )


def compare(index: SqliteSearchIndex, encoder: TextEncoder, questions: Sequence[Question]) -> GateFigures:
    """BM25 alone, then BM25 + ``encoder``, on the same index and questions; the index keeps the encoder.

    The index's ranking is restored afterwards, so a caller's own setting survives the comparison.
    """
    from docllm.search.sqlite_index import DEFAULT_RANKING, HYBRID_RANKING

    saved = index.ranking
    try:
        index.set_encoder(encoder)
        index.ranking = DEFAULT_RANKING
        bm25 = evaluate(index, questions)
        index.ranking = HYBRID_RANKING
        hybrid = evaluate(index, questions)
    finally:
        index.ranking = saved
    return decide(bm25, hybrid)


def validation_questions(records: Iterable[SplitRecord], *, seed: int = 0) -> list[Question]:
    """Questions made by rule from validation-split chunks, each expecting its own page.

    Two kinds, one per chunk at most: ``heading`` (the chunk's own heading in a validation-only
    question form) and ``sentence`` (one of its sentences with the heading's words removed, the way a
    user quotes what they read rather than the page's title). Deterministic for a seed; at most
    :data:`MAX_VALIDATION_QUESTIONS`.

    >>> recs = [SplitRecord(chunk_id="1", doc_key="s/a.md",
    ...         text="# Buckets\\n\\nA bucket holds objects and every object has a key.")]
    >>> sorted((q.type, q.expected_doc_keys[0]) for q in validation_questions(recs))
    [('heading', 's/a.md'), ('sentence', 's/a.md')]
    """
    from docllm.search.encoder_train import _SENTENCE, passages_from_records

    rng = random.Random(seed)
    out: list[Question] = []
    seen: set[str] = set()
    for p in passages_from_records(records):
        heading = p.headings[-1] if p.headings else p.title
        candidates: list[tuple[str, str]] = []
        if heading and len(heading.split()) >= 1:
            form = rng.choice(_VALIDATION_FORMS)
            candidates.append(("heading", form.format(h=heading[:1].lower() + heading[1:])))
        heading_words = {w.lower() for w in heading.split()}
        sentences = [s for s in _SENTENCE.split(p.body) if 6 <= len(s.split()) <= 40]
        if sentences:
            words = [w for w in rng.choice(sentences).split() if w.lower().strip(".,:;") not in heading_words]
            if len(words) >= 4:
                candidates.append(("sentence", " ".join(words)))
        for kind, text in candidates:
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            out.append(Question(question=text, expected_doc_keys=[p.doc_key], type=kind, id=f"v{len(out)}"))
    rng.shuffle(out)
    return out[:MAX_VALIDATION_QUESTIONS]


def index_split_records(index: SqliteSearchIndex, records: Iterable[SplitRecord], *, batch: int = 200) -> int:
    """Add split records to ``index`` as chunks (service: the key's first segment); returns documents."""
    from docllm.search.encoder_train import passages_from_records

    recs = list(records)
    titles: dict[str, str] = {}
    for p in passages_from_records(recs):
        titles.setdefault(p.doc_key, p.title)
    by_doc: dict[str, list[IndexedChunk]] = {}
    for rec in recs:
        by_doc.setdefault(rec.doc_key, []).append(
            IndexedChunk(
                chunk_id=rec.chunk_id,
                doc_key=rec.doc_key,
                service=rec.doc_key.split("/", 1)[0],
                title=titles.get(rec.doc_key, rec.doc_key.rsplit("/", 1)[-1]),
                heading_path=[],  # the chunk's text keeps its Markdown headings, which BM25 and the encoder read
                text=rec.text,
            )
        )
    items = [(doc, "v", chunks) for doc, chunks in by_doc.items()]
    for start in range(0, len(items), batch):
        index.replace_documents(items[start : start + batch])
    return len(items)


def split_paths(dataset_dir: Path) -> list[Path]:
    """The split files of a dataset channel that exist (the gate's index holds every split's pages)."""
    paths = [dataset_dir / f"{split}.jsonl" for split in ("train", "validation", "test")]
    return [p for p in paths if p.exists()]
