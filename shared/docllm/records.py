"""State records: what the platform remembers, one pydantic model per kind.

State layout (single table, ``pk``/``sk``; see docs/architecture.md):

=================  ====================  ==========================
pk                 sk                    item
=================  ====================  ==========================
``docs``           doc_key               :class:`DocumentRecord`
``datasets``       version               dataset summary
``tokenizers``     version               tokenizer summary
``jobs``           job name              :class:`JobRecord`
``models``         version               model summary
``dedup#…``        …                     owned by ``docllm.ingest.dedup``
=================  ====================  ==========================
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

DocumentStatus = Literal["processing", "processed", "duplicate", "quarantined", "removed"]

DOCS_PK = "docs"
JOBS_PK = "jobs"


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class DocumentRecord(BaseModel):
    """The one place that says what became of an uploaded document."""

    doc_key: str
    bucket: str
    version_id: str
    etag: str = ""
    sha256: str | None = None
    size: int = 0
    service: str
    status: DocumentStatus
    reason_code: str | None = None
    reason: str | None = None
    duplicate_of: str | None = None
    title: str | None = None
    language: str | None = None
    content_format: str | None = None
    chunks_uri: str | None = None
    chunk_count: int = 0
    token_estimate: int = 0
    revision: str = Field(default="", description="changes with every saved state; events repeat it")
    updated_at: str = Field(default_factory=utcnow)


class JobRecord(BaseModel):
    """A job the platform launched, so its completion event can be routed to its stage."""

    name: str
    stage: str = Field(description="the stage (service_layer module) that launched the job and completes it")
    status: str = Field(default="InProgress", description="InProgress, then Completed, Failed or Stopped")
    output_uri: str
    context: dict[str, str] = Field(default_factory=dict, description="stage inputs, e.g. dataset_version")
    failure_reason: str | None = None
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)
