"""The ingestion stage's output records.

A processed document is written to the processed bucket as JSONL, one
:class:`Chunk` per line, at ``chunks/<doc_key>.jsonl``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Chunk(BaseModel):
    """One retrievable, trainable piece of a document."""

    chunk_id: str = Field(description="stable: same document content gives the same ids")
    doc_key: str = Field(description="object key as uploaded, e.g. s3/UsingBucket.md")
    doc_version: str = Field(description="S3 version id (or ETag) of the source")
    source_sha256: str = Field(description="sha256 of the source bytes")
    service: str = Field(description="service or guide family the upload was tagged with")
    guide: str | None = Field(default=None, description="guide/site name, where known")
    title: str = Field(description="document title")
    heading_path: list[str] = Field(description="breadcrumb: Guide > Page > Section > Subsection")
    position: int = Field(ge=0, description="0-based ordinal of the chunk in its document")
    pages: list[int] | None = Field(default=None, description="1-based PDF pages the chunk spans")
    language: str = Field(description="BCP-47 tag, e.g. en, ja, ko")
    text: str
    token_estimate: int = Field(ge=0)
