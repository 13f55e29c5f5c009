"""The search API's input and output models and the one function the HTTP API and CLI call."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from docllm.ports.search import SearchHit, SearchIndex
from docllm.search.exceptions import UnknownServiceError

MAX_QUERY_CHARS = 512
HITS_PER_DOCUMENT = 3
"""With ``group_by="document"``: the best chunks kept per document."""
CANDIDATES_PER_DOCUMENT = 5
"""With ``group_by="document"``: chunks fetched per document asked for, so that ``k`` distinct documents
are usually found even when the best documents have many matching chunks (capped at :data:`MAX_CANDIDATES`)."""
MAX_CANDIDATES = 200


class SearchQuery(BaseModel):
    """A validated search request.

    Examples
    --------
    >>> SearchQuery(q="  s3:PutObject  ").q
    's3:PutObject'
    """

    q: str = Field(description="query text, 1..512 characters after stripping, no control characters")
    k: int = Field(default=10, ge=1, le=100, description="how many hits to return")
    service: str | None = Field(default=None, description="only hits of this service (must be indexed)")
    group_by: Literal["document"] | None = Field(
        default=None, description='"document": k distinct documents, each with its best chunks'
    )

    @field_validator("q")
    @classmethod
    def _clean_query(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("query is empty")
        if len(value) > MAX_QUERY_CHARS:
            raise ValueError(f"query is longer than {MAX_QUERY_CHARS} characters")
        # Category C* covers control, format, surrogate and unassigned code points.
        if any(unicodedata.category(ch).startswith("C") for ch in value):
            raise ValueError("query contains control characters")
        return value


class DocumentHits(BaseModel):
    """One document's best chunks; documents rank by their best chunk's score."""

    doc_key: str
    service: str
    title: str
    score: float = Field(description="the best chunk's score")
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    query: str
    k: int
    service: str | None
    hits: list[SearchHit]
    took_ms: float
    group_by: Literal["document"] | None = None
    documents: list[DocumentHits] | None = Field(
        default=None, description='with group_by="document": the documents; ``hits`` then holds their chunks in order'
    )


def group_by_document(
    hits: Sequence[SearchHit], *, k: int, per_document: int = HITS_PER_DOCUMENT
) -> list[DocumentHits]:
    """The first ``k`` documents of ``hits`` (best score first), each with at most ``per_document`` chunks.

    ``hits`` come best first, so a document's first hit is its best and documents keep the order of
    their best hits: the ranking is the engine's, only the repetition is removed.

    Examples
    --------
    >>> hit = lambda c, d, s: SearchHit(chunk_id=c, doc_key=d, service="s3", title=d, heading_path=[], text="", score=s)
    >>> hits = [hit("a1", "a", 9), hit("a2", "a", 8), hit("b1", "b", 7), hit("a3", "a", 6)]
    >>> groups = group_by_document(hits, k=2, per_document=2)
    >>> [(g.doc_key, [h.chunk_id for h in g.hits]) for g in groups]
    [('a', ['a1', 'a2']), ('b', ['b1'])]
    """
    groups: dict[str, DocumentHits] = {}
    for hit in hits:
        group = groups.get(hit.doc_key)
        if group is None:
            if len(groups) == k:
                continue  # later hits may still add chunks to documents already chosen
            groups[hit.doc_key] = DocumentHits(
                doc_key=hit.doc_key, service=hit.service, title=hit.title, score=hit.score, hits=[hit]
            )
        elif len(group.hits) < per_document:
            group.hits.append(hit)
    return list(groups.values())


def run_search(index: SearchIndex, query: SearchQuery) -> SearchResponse:
    """Run ``query`` against ``index``.

    Raises
    ------
    UnknownServiceError
        ``query.service`` names no indexed service (a :class:`~docllm.exceptions.PermanentError`).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from docllm.search.sqlite_index import SqliteSearchIndex
    >>> run_search(SqliteSearchIndex(Path(tempfile.mkdtemp())), SearchQuery(q="bucket")).hits
    []
    """
    start = time.perf_counter()
    if query.service is not None:
        known = index.services()
        if query.service not in known:
            raise UnknownServiceError(query.service, known)
    if query.group_by == "document":
        wanted = min(MAX_CANDIDATES, query.k * CANDIDATES_PER_DOCUMENT)
        documents = group_by_document(index.search(query.q, k=wanted, service=query.service), k=query.k)
        hits = [h for d in documents for h in d.hits]
    else:
        documents = None
        hits = index.search(query.q, k=query.k, service=query.service)
    return SearchResponse(
        query=query.q,
        k=query.k,
        service=query.service,
        hits=hits,
        took_ms=(time.perf_counter() - start) * 1000.0,
        group_by=query.group_by,
        documents=documents,
    )
