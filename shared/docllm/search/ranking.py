"""Lexical ranking options of the embedded engine, each behind a setting (pure; numpy-free).

Measured one at a time on the realistic set (``bench/search/realset.jsonl``; figures in
``docs/benchmarks.md``, choices in ``docs/decisions.md``):

* **question forms** (:func:`query_terms`): drop the words that make a sentence a question
  ("how do I", "can I", "is it possible", "is there a way") so that they do not score chunks that
  merely contain "how" or "can"; the query keeps at least one term;
* **document aggregation** (:func:`aggregate_documents`): rank pages, not chunks: a page scores its
  best chunk plus ``doc_aggregation`` times the sum of its next ``AGGREGATE_CHUNKS - 1`` chunks, so a
  page that matches in several sections beats one lucky chunk elsewhere; the chunks are returned
  grouped by page, best page first (what ``group_by_document`` and the evaluation read);
* **pseudo-relevance feedback** (:func:`rm3_weights`, RM3-style): the first pass's best ``prf_docs``
  chunks vote for expansion terms, weighted by their normalised score and by each term's share of the
  chunk; the ``prf_terms`` best new terms join the query with total weight ``1 - prf_weight``;
* **hybrid fusion** (``dense_weight``, issue 18's learned component): BM25's and the trained
  encoder's (``docllm.search.encoder``) best ``fusion_depth`` chunks fused by reciprocal rank
  (``docllm.search.fusion``); needs an index given an encoder;
* **field weights** are an index setting (``SqliteSearchIndex(weights=...)``), not a query one: title,
  headings, body and, with four weights, code blocks apart from prose.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from docllm.search.analyzer import analyze, analyze_query

#: Chunks of one page that count towards its aggregated score (the best one included).
AGGREGATE_CHUNKS = 3

#: Query terms that make a sentence a question rather than say what it is about (stemmed as the
#: analyzer stems them). Kept short: "when", "where", "which" can carry meaning ("where are logs").
QUESTION_TERMS: frozenset[str] = frozenset(
    analyze(
        "how what do does did can could should would may might must i me my mine we us our you your "
        "am has have had please tell possible way ways need want"
    )
)


@dataclass(frozen=True)
class Ranking:
    """Query-time ranking options (all off: plain BM25 over chunks, the engine's historical behaviour)."""

    question_forms: bool = False
    doc_aggregation: float = 0.0
    prf_terms: int = 0
    prf_docs: int = 10
    prf_weight: float = 0.5
    #: Weight of the learned encoder's ranking in reciprocal rank fusion with BM25 (0: BM25 alone);
    #: only used by an index given an encoder (``SqliteSearchIndex(encoder=...)``).
    dense_weight: float = 0.0
    #: Chunks taken from each of the two rankings before they are fused.
    fusion_depth: int = 100
    #: A query naming an identifier (``s3:PutObject``, ``PutBucketPolicy``, ``--dry-run``) is ranked
    #: by BM25 alone: the encoder has no notion of exact names and only pushes near-misses up.
    dense_skips_identifiers: bool = True

    @property
    def plain(self) -> bool:
        return (
            not self.question_forms and self.doc_aggregation <= 0.0 and self.prf_terms <= 0 and self.dense_weight <= 0.0
        )


#: Something only an exact match finds: ``a:b``, ``a_b``, ``--flag``, ``a.b``, or an inner capital (``PutObject``).
_IDENTIFIER = re.compile(r"\w[:_]\w|--\w|\w\.\w|[a-z][A-Z][a-z]")


def names_identifier(text: str) -> bool:
    """Whether ``text`` holds an identifier-shaped token.

    Examples
    --------
    >>> [names_identifier(q) for q in ("s3:PutObject", "run with --dry-run", "Can I rename a bucket?")]
    [True, True, False]
    """
    return _IDENTIFIER.search(text) is not None


def query_terms(text: str, ranking: Ranking) -> list[str]:
    """The query's terms, without question words when ``ranking.question_forms`` (never emptied).

    Examples
    --------
    >>> query_terms("How do I enable versioning?", Ranking(question_forms=True))
    ['enabl', 'version']
    >>> query_terms("How do I?", Ranking(question_forms=True))
    ['how', 'do', 'i']
    """
    terms = analyze_query(text)
    if not ranking.question_forms:
        return terms
    kept = [t for t in terms if t not in QUESTION_TERMS]
    return kept or terms


def aggregate_documents(
    ranked: Sequence[tuple[int, float]], doc_of: Callable[[int], str], weight: float
) -> list[tuple[int, float]]:
    """Reorder ``(slot, score)`` chunks (best first) by their page's aggregated score, pages apart.

    Examples
    --------
    >>> docs = {1: "a", 2: "b", 3: "b", 4: "a"}
    >>> aggregate_documents([(1, 9.0), (2, 8.0), (3, 7.0), (4, 1.0)], docs.__getitem__, 0.5)
    [(2, 8.0), (3, 7.0), (1, 9.0), (4, 1.0)]
    """
    by_doc: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for slot, score in ranked:
        by_doc[doc_of(slot)].append((slot, score))
    scored = []
    for order, chunks in enumerate(by_doc.values()):  # insertion order = best-chunk order
        best = chunks[0][1]
        rest = sum(s for _, s in chunks[1:AGGREGATE_CHUNKS])
        scored.append((-(best + weight * rest), order, chunks))
    scored.sort(key=lambda x: (x[0], x[1]))
    return [c for _, _, chunks in scored for c in chunks]


def rm3_weights(
    terms: Sequence[str],
    feedback: Sequence[tuple[float, Mapping[str, float]]],
    *,
    n_terms: int,
    original_weight: float,
) -> dict[str, float]:
    """Query term weights after RM3-style feedback from ``(score, term frequencies)`` of the best chunks.

    The original terms share ``original_weight`` equally; the ``n_terms`` best other terms share the
    rest in proportion to ``sum over chunks of softmax-free normalised score * tf / chunk tf total``.

    Examples
    --------
    >>> w = rm3_weights(["bucket"], [(2.0, {"bucket": 1.0, "polici": 3.0})], n_terms=1, original_weight=0.5)
    >>> sorted(w.items())
    [('bucket', 0.5), ('polici', 0.5)]
    """
    original = list(dict.fromkeys(terms))
    weights = {t: original_weight / len(original) for t in original} if original else {}
    total_score = sum(max(s, 0.0) for s, _ in feedback)
    if n_terms <= 0 or total_score <= 0.0:
        return {t: 1.0 for t in original}
    votes: dict[str, float] = defaultdict(float)
    for score, tfs in feedback:
        mass = sum(tfs.values())
        if mass <= 0.0:
            continue
        for term, tf in tfs.items():
            if term not in weights:
                votes[term] += (score / total_score) * tf / mass
    best = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[:n_terms]
    norm = sum(v for _, v in best)
    for term, v in best:
        weights[term] = (1.0 - original_weight) * v / norm if norm else 0.0
    return weights
