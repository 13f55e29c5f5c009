"""The search API's input and output models and the one function the HTTP API and CLI call."""

from __future__ import annotations

import time
import unicodedata

from pydantic import BaseModel, Field, field_validator

from docllm.ports.search import SearchHit, SearchIndex
from docllm.search.exceptions import UnknownServiceError

MAX_QUERY_CHARS = 512


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


class SearchResponse(BaseModel):
    query: str
    k: int
    service: str | None
    hits: list[SearchHit]
    took_ms: float


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
    hits = index.search(query.q, k=query.k, service=query.service)
    return SearchResponse(
        query=query.q,
        k=query.k,
        service=query.service,
        hits=hits,
        took_ms=(time.perf_counter() - start) * 1000.0,
    )
