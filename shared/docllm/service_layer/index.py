"""Index stage: keep the search index equal to the processed documents.

"Document Processed" replaces a document's chunks atomically; "Document
Removed" deletes them. A stale event (the document moved on since) is
skipped, so redelivery and reordering cannot resurrect old content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from docllm.bootstrap import Platform
from docllm.events.contracts import DocumentIndexed, DocumentProcessed, DocumentRemoved, parse_detail, to_bus
from docllm.events.envelope import BusEvent
from docllm.exceptions import ContractError, NotFoundError
from docllm.ports.objects import split_uri
from docllm.ports.search import IndexedChunk
from docllm.service_layer.ingest import load_record


@dataclass(frozen=True)
class IndexResult:
    doc_key: str
    outcome: str
    chunks: int = 0


def handle_document_event(p: Platform, raw: dict[str, Any]) -> IndexResult:
    event = BusEvent.model_validate(raw)
    if event.detail_type == DocumentProcessed.DETAIL_TYPE:
        return index_document(p, parse_detail(event, DocumentProcessed))
    if event.detail_type == DocumentRemoved.DETAIL_TYPE:
        return unindex_document(p, parse_detail(event, DocumentRemoved))
    raise ContractError(f"the index stage does not handle {event.detail_type!r}")


def index_document(p: Platform, detail: DocumentProcessed) -> IndexResult:
    record = load_record(p, detail.doc_key)
    if record is None or record.version_id != detail.version_id or record.status not in ("processed", "duplicate"):
        return IndexResult(detail.doc_key, "stale")
    bucket, key = split_uri(detail.chunks_uri)
    try:
        info = p.objects.head(bucket, key)
    except NotFoundError:
        return IndexResult(detail.doc_key, "stale")
    if info.metadata.get("doc-version") not in (None, detail.version_id):
        return IndexResult(detail.doc_key, "stale")
    chunks = [
        IndexedChunk.model_validate({k: v for k, v in json.loads(line).items() if k in IndexedChunk.model_fields})
        # split on "\n" only: splitlines() also breaks on U+2028, form feed… inside JSON strings.
        for line in p.objects.get(bucket, key).decode("utf-8").split("\n")
        if line.strip()
    ]
    if chunks:
        p.search.replace_document(detail.doc_key, detail.version_id, chunks)
    else:
        # A duplicate keeps its record but has nothing to find: the index holds only documents with chunks.
        p.search.delete_document(detail.doc_key)
    p.bus.publish(
        [to_bus(DocumentIndexed(doc_key=detail.doc_key, version_id=detail.version_id, chunk_count=len(chunks)))]
    )
    p.metrics.put("ChunksIndexed", len(chunks))
    return IndexResult(detail.doc_key, "indexed", len(chunks))


def unindex_document(p: Platform, detail: DocumentRemoved) -> IndexResult:
    record = load_record(p, detail.doc_key)
    if record is not None and record.status in ("processed", "duplicate") and record.chunk_count > 0:
        return IndexResult(detail.doc_key, "stale")  # re-uploaded since: its own event re-indexes it
    p.search.delete_document(detail.doc_key)
    return IndexResult(detail.doc_key, "removed")
