"""Search port: OpenSearch on AWS, an embedded on-disk BM25 index locally."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from pydantic import BaseModel


class IndexedChunk(BaseModel):
    """What the index stores of one chunk (a subset of :class:`docllm.ingest.models.Chunk`)."""

    chunk_id: str
    doc_key: str
    service: str
    title: str
    heading_path: list[str]
    text: str


class SearchHit(BaseModel):
    chunk_id: str
    doc_key: str
    service: str
    title: str
    heading_path: list[str]
    text: str
    score: float


class SearchIndex(ABC):
    @abstractmethod
    def replace_document(self, doc_key: str, version: str, chunks: Sequence[IndexedChunk]) -> None:
        """Atomically swap all chunks of ``doc_key`` for ``chunks``.

        Readers never see a document half old, half new. A call with the
        ``version`` and the chunk ids already indexed is a no-op (idempotent
        redelivery); the same version with other chunks (its boilerplate
        changed) is a replacement.
        """

    @abstractmethod
    def delete_document(self, doc_key: str) -> None: ...

    @abstractmethod
    def search(self, query: str, *, k: int = 10, service: str | None = None) -> list[SearchHit]: ...

    @abstractmethod
    def document_versions(self) -> dict[str, str]:
        """``doc_key -> version`` of everything indexed (for consistency checks)."""

    @abstractmethod
    def services(self) -> set[str]: ...
