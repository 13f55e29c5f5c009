"""Retrieval for answers: documents, not chunks, and a relevance floor below which the answer abstains.

Grouping. The index returns chunks; a page with five matching sections would fill the prompt and
the citations with one page. Hits are grouped by document (:func:`docllm.search.api.group_by_document`):
documents rank by their best chunk's score and keep their best :data:`CHUNKS_PER_DOCUMENT` chunks
for the prompt; their other chunks among the candidates are kept apart (``spare``), for the answer
path to use when the best ones hold no line to copy (:func:`docllm.answers.service.copyable_sections`).

Relevance floor. BM25 scores are not comparable across corpora, index sizes or query lengths (a score
of 12 means "good" on one index and "weak" on another), so the floor is not a score. It is the
**coverage** of the question: the share of the question's content terms — the search analyzer's
terms (stemmed, identifiers whole and split) minus stop words, question words (:data:`QUESTION_WORDS`)
and words every page has (:data:`GENERIC_WORDS`) — that occur in a document's retrieved chunks
(title, heading path and text). The question is covered when some retrieved document reaches
:data:`MIN_COVERAGE`; otherwise the answer abstains before anything is generated. A question
with no content term at all ("how do I?") is not covered.

Why 0.6: "How do I enable versioning on a bucket?" has the terms ``enabl version bucket``, all in the
S3 versioning page (1.0); an off-topic question shares one generic-ish word at most with the
best-scoring page ("How do I bake sourdough bread?": ``bake sourdough bread``, 0.0 on the AWS guides;
"How do I configure Kubernetes pod autoscaling?": ``configur kubernet pod autosc``, ≤ 0.5). A paraphrase
that names one thing the page words differently still reaches 0.6 with three or more terms
(2 of 3 = 0.67). docs/answers.md lists the trade-off; tests pin both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel, Field

from docllm.ports.search import SearchHit, SearchIndex
from docllm.search.analyzer import analyze, analyze_query
from docllm.search.api import MAX_CANDIDATES, group_by_document

CHUNKS_PER_DOCUMENT = 2
"""Chunks kept per document: the best section and the next best (often its neighbour)."""
CANDIDATES_PER_DOCUMENT = 4
"""Chunks fetched per document asked for, so grouping still finds ``k`` distinct documents."""
MIN_COVERAGE = 0.6
"""The relevance floor: share of the question's content terms a retrieved document must hold."""

QUESTION_WORDS = frozenset(
    analyze(
        "how what when where which who whom whose why do does did done can could should would shall may might must "
        "i me my mine we us our you your yours am has have had having please tell explain possible way ways "
        "need want wants get gets"
    )
)
"""Terms that make a sentence a question, not what it is about (stemmed as the analyzer stems them).
``get`` is among them: "how do I get X" is about X; an identifier such as ``GetObject`` keeps its
whole-word term ``getobject`` and so still counts."""
GENERIC_WORDS = frozenset(analyze("aws amazon"))
"""Words every page of the corpus holds: they make any question look covered."""


class RetrievedChunk(BaseModel):
    chunk_id: str
    doc_key: str
    version_id: str | None
    service: str
    title: str
    heading_path: list[str]
    text: str
    score: float


class DocumentContext(BaseModel):
    """One retrieved document: its best chunks and how much of the question they cover."""

    doc_key: str
    version_id: str | None
    service: str
    title: str
    score: float
    coverage: float = Field(ge=0, le=1)
    chunks: list[RetrievedChunk]
    spare: list[RetrievedChunk] = Field(
        default_factory=list,
        description="the document's further chunks among the candidates, best first: what the answer path "
        "may put in the prompt instead when its best chunks hold no line to copy",
    )


class Retrieval(BaseModel):
    question_terms: list[str] = Field(description="the question's content terms, the coverage's denominator")
    documents: list[DocumentContext] = Field(description="best first (by best chunk score)")
    coverage: float = Field(description="the best coverage among the documents")

    @property
    def covered(self) -> bool:
        """Whether some document clears the relevance floor (module docstring)."""
        return bool(self.question_terms) and self.coverage >= MIN_COVERAGE


def question_terms(question: str) -> list[str]:
    """The content terms of ``question``: analyzed, once each, without question and generic words.

    Examples
    --------
    >>> question_terms("How do I enable versioning on an Amazon S3 bucket?")
    ['enabl', 'version', 's3', 'bucket']
    """
    return [t for t in analyze_query(question) if t not in QUESTION_WORDS and t not in GENERIC_WORDS]


def coverage(terms: Sequence[str], chunks: Sequence[SearchHit | RetrievedChunk]) -> float:
    """The share of ``terms`` found in the chunks' titles, heading paths and texts (0 when no terms).

    Examples
    --------
    >>> hit = SearchHit(chunk_id="c", doc_key="d", service="s3", title="Versioning", heading_path=[],
    ...                 text="Enable it on the bucket.", score=1.0)
    >>> coverage(["enabl", "version", "bucket", "lifecycl"], [hit])
    0.75
    """
    if not terms:
        return 0.0
    present: set[str] = set()
    for chunk in chunks:
        present.update(analyze(" ".join([chunk.title, *chunk.heading_path, chunk.text])))
    return sum(1 for t in terms if t in present) / len(terms)


def retrieve(
    index: SearchIndex,
    question: str,
    *,
    k: int = 5,
    service: str | None = None,
    versions: Callable[[], dict[str, str]] | None = None,
) -> Retrieval:
    """The ``k`` best documents for ``question``, their best chunks and their coverage.

    ``versions`` gives ``doc_key -> version`` (default: ``index.document_versions``), called once and
    only when something was found: search hits do not carry the document version a citation names.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from docllm.search.sqlite_index import SqliteSearchIndex
    >>> retrieve(SqliteSearchIndex(Path(tempfile.mkdtemp())), "How do I enable versioning?").covered
    False
    """
    terms = question_terms(question)
    wanted = min(MAX_CANDIDATES, k * CANDIDATES_PER_DOCUMENT)
    hits = index.search(question, k=wanted, service=service) if terms else []
    groups = group_by_document(hits, k=k, per_document=wanted)
    version_of = (versions or index.document_versions)() if groups else {}
    documents = []
    for g in groups:
        # Best first within the document; the prompt takes the best few, the rest are spare.
        chunks = [RetrievedChunk(**h.model_dump(), version_id=version_of.get(h.doc_key)) for h in g.hits]
        documents.append(
            DocumentContext(
                doc_key=g.doc_key,
                version_id=version_of.get(g.doc_key),
                service=g.service,
                title=g.title,
                score=g.score,
                coverage=coverage(terms, g.hits[:CHUNKS_PER_DOCUMENT]),
                chunks=chunks[:CHUNKS_PER_DOCUMENT],
                spare=chunks[CHUNKS_PER_DOCUMENT:],
            )
        )
    return Retrieval(
        question_terms=terms,
        documents=documents,
        coverage=max((d.coverage for d in documents), default=0.0),
    )
