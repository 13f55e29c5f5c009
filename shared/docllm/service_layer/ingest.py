"""Ingest stage: an S3 object event in, a processed or quarantined document out.

Every uploaded document ends in exactly one state recorded in the ``docs``
partition (processed, duplicate, quarantined, removed) and one event says so.
Idempotent by object version (a redelivered event for the version already
recorded does nothing) and by content (a new version with the same bytes
keeps the existing chunks).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from docllm.bootstrap import Platform
from docllm.events.aws import S3ObjectEvent
from docllm.events.contracts import DocumentProcessed, DocumentQuarantined, DocumentRemoved, to_bus
from docllm.exceptions import NotFoundError
from docllm.records import DOCS_PK, DocumentRecord, utcnow

Outcome = Literal["processed", "duplicate", "quarantined", "removed", "unchanged", "stale", "ignored"]


@dataclass(frozen=True)
class IngestResult:
    doc_key: str
    outcome: Outcome
    detail: str = ""


def chunks_key(doc_key: str) -> str:
    return f"chunks/{doc_key}.jsonl"


def service_of(doc_key: str) -> str:
    """The first key segment names the service (``docllm ingest DIR --service S`` puts files under ``S/``)."""
    head, sep, _ = doc_key.partition("/")
    return head if sep else "default"


def load_record(p: Platform, doc_key: str) -> DocumentRecord | None:
    item = p.state.get(DOCS_PK, doc_key)
    return None if item is None else DocumentRecord.model_validate(item)


def save_record(p: Platform, record: DocumentRecord) -> None:
    record.updated_at = utcnow()
    p.state.put(DOCS_PK, record.doc_key, record.model_dump(mode="json"))


def handle_object_event(p: Platform, event: dict[str, Any]) -> IngestResult:
    s3 = S3ObjectEvent.model_validate(event)
    bucket = s3.detail.bucket.name
    key = s3.detail.object.key
    version = s3.detail.object.version_id or s3.detail.object.etag or ""
    if bucket != p.settings.raw_bucket:
        return IngestResult(key, "ignored", f"bucket {bucket} is not the raw bucket")
    if s3.detail_type == "Object Deleted":
        return remove_document(p, bucket, key, version)
    return ingest_document(p, bucket, key, version)


def ingest_document(p: Platform, bucket: str, key: str, version: str) -> IngestResult:
    from docllm.ingest.pipeline import IngestConfig, Processed, process_document

    try:
        head = p.objects.head(bucket, key)
    except NotFoundError:
        return IngestResult(key, "stale", "the object was deleted before it was processed")
    if (head.version_id or head.etag) != version:
        # A newer version (or a delete) exists; its own event will process it.
        return IngestResult(key, "stale", f"version {version} is no longer current")
    record = load_record(p, key)
    if record and record.version_id == version and record.status in ("processed", "duplicate", "quarantined"):
        return IngestResult(key, "unchanged", "this version was already processed")

    service = head.metadata.get("service") or service_of(key)
    config = IngestConfig()
    base = DocumentRecord(
        doc_key=key,
        bucket=bucket,
        version_id=version,
        etag=head.etag,
        size=head.size,
        service=service,
        status="processing",
    )
    if head.size > config.max_bytes:
        return _quarantine(p, base, None, "too_large", f"{head.size} bytes is over the {config.max_bytes}-byte limit")

    data = p.objects.get(bucket, key, version_id=head.version_id)
    sha = hashlib.sha256(data).hexdigest()
    if record and record.sha256 == sha and record.status in ("processed", "duplicate", "quarantined"):
        # Same bytes under a new version id: nothing to redo, only the version moves.
        record.version_id, record.etag = version, head.etag
        save_record(p, record)
        return IngestResult(key, "unchanged", "same content as the processed version")

    result = process_document(data, doc_key=key, doc_version=version, service=service, config=config)
    if not isinstance(result, Processed):
        return _quarantine(p, base, sha, result.reason_code, result.reason)
    return _store_processed(p, base, sha, result)


def _store_processed(p: Platform, base: DocumentRecord, sha: str, result: Any) -> IngestResult:
    from docllm.ingest.dedup import DedupLedger, apply_boilerplate

    ledger = DedupLedger(p.state)
    ledger.forget(base.doc_key)  # an overwrite must not be judged a duplicate of its old self
    decision = ledger.decide(base.doc_key, base.service, result.fingerprint)
    if decision.boilerplate_hashes and not decision.duplicate_of:
        result = apply_boilerplate(result, decision.boilerplate_hashes)
    chunks = [] if decision.duplicate_of else result.chunks
    chunks_uri = _write_chunks(p, base.doc_key, base.version_id, sha, chunks)
    tokens = sum(c.token_estimate for c in chunks)
    record = base.model_copy(
        update={
            "sha256": sha,
            "status": "duplicate" if decision.duplicate_of else "processed",
            "duplicate_of": decision.duplicate_of,
            "title": result.title,
            "language": result.language,
            "content_format": result.content_format,
            "chunks_uri": chunks_uri,
            "chunk_count": len(chunks),
            "token_estimate": tokens,
        }
    )
    save_record(p, record)
    p.bus.publish(
        [
            to_bus(
                DocumentProcessed(
                    doc_key=record.doc_key,
                    bucket=record.bucket,
                    version_id=record.version_id,
                    sha256=sha,
                    service=record.service,
                    title=result.title,
                    language=result.language,
                    content_format=result.content_format,
                    chunks_uri=chunks_uri,
                    chunk_count=len(chunks),
                    token_estimate=tokens,
                    duplicate_of=decision.duplicate_of,
                ),
                resources=[f"arn:aws:s3:::{record.bucket}/{record.doc_key}"],
            )
        ]
    )
    p.metrics.put("DocumentsProcessed", 1, dimensions={"service": record.service})
    p.metrics.put("ChunksWritten", len(chunks), dimensions={"service": record.service})
    for older in decision.supersedes:
        _mark_superseded(p, older, record.doc_key)
    return IngestResult(record.doc_key, "duplicate" if decision.duplicate_of else "processed")


def _write_chunks(p: Platform, doc_key: str, version: str, sha: str, chunks: list[Any]) -> str:
    body = "".join(c.model_dump_json() + "\n" for c in chunks).encode("utf-8")
    p.objects.put(
        p.settings.processed_bucket,
        chunks_key(doc_key),
        body,
        metadata={"doc-version": version, "source-sha256": sha},
        content_type="application/x-ndjson",
    )
    return f"s3://{p.settings.processed_bucket}/{chunks_key(doc_key)}"


def _mark_superseded(p: Platform, doc_key: str, canonical: str) -> None:
    """A document processed earlier turned out to duplicate ``canonical`` (whose key sorts first):
    it keeps its record, loses its chunks, and the index follows through the usual event."""
    record = load_record(p, doc_key)
    if record is None or record.status != "processed" or record.sha256 is None:
        return
    chunks_uri = _write_chunks(p, doc_key, record.version_id, record.sha256, [])
    record = record.model_copy(
        update={"status": "duplicate", "duplicate_of": canonical, "chunk_count": 0, "token_estimate": 0}
    )
    save_record(p, record)
    p.bus.publish(
        [
            to_bus(
                DocumentProcessed(
                    doc_key=doc_key,
                    bucket=record.bucket,
                    version_id=record.version_id,
                    sha256=record.sha256,
                    service=record.service,
                    title=record.title or doc_key,
                    language=record.language or "en",
                    content_format=record.content_format or "text",
                    chunks_uri=chunks_uri,
                    chunk_count=0,
                    token_estimate=0,
                    duplicate_of=canonical,
                )
            )
        ]
    )


def _quarantine(p: Platform, base: DocumentRecord, sha: str | None, code: str, reason: str) -> IngestResult:
    record = base.model_copy(
        update={
            "sha256": sha,
            "status": "quarantined",
            "reason_code": code,
            "reason": reason,
            "chunk_count": 0,
            "token_estimate": 0,
        }
    )
    # A quarantined overwrite must not leave the previous version's chunks searchable.
    with contextlib.suppress(NotFoundError):
        p.objects.delete(p.settings.processed_bucket, chunks_key(base.doc_key))
    save_record(p, record)
    p.bus.publish(
        [
            to_bus(
                DocumentQuarantined(
                    doc_key=record.doc_key,
                    bucket=record.bucket,
                    version_id=record.version_id,
                    sha256=sha,
                    reason_code=code,
                    reason=reason,
                )
            ),
            to_bus(DocumentRemoved(doc_key=record.doc_key, bucket=record.bucket, version_id=record.version_id)),
        ]
    )
    p.metrics.put("DocumentsQuarantined", 1, dimensions={"reason": code})
    return IngestResult(record.doc_key, "quarantined", f"{code}: {reason}")


def remove_document(p: Platform, bucket: str, key: str, version: str) -> IngestResult:
    try:
        p.objects.head(bucket, key)
        return IngestResult(key, "stale", "the object exists again; its upload event handles it")
    except NotFoundError:
        pass
    record = load_record(p, key)
    if record is None or record.status == "removed":
        return IngestResult(key, "unchanged", "nothing recorded for this key")
    from docllm.ingest.dedup import DedupLedger

    DedupLedger(p.state).forget(key)
    with contextlib.suppress(NotFoundError):
        p.objects.delete(p.settings.processed_bucket, chunks_key(key))
    record = record.model_copy(
        update={"status": "removed", "version_id": version or record.version_id, "chunk_count": 0, "token_estimate": 0}
    )
    save_record(p, record)
    p.bus.publish([to_bus(DocumentRemoved(doc_key=key, bucket=bucket, version_id=version or None))])
    p.metrics.put("DocumentsRemoved", 1)
    return IngestResult(key, "removed")
