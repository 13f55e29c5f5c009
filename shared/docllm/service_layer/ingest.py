"""Ingest stage: an S3 object event in, a processed or quarantined document out.

Every uploaded document ends in exactly one state recorded in the ``docs``
partition (processed, duplicate, quarantined, removed) and one event says so,
committed together through the outbox (``service_layer/outbox.py``).
Idempotent by object version (a redelivered event for the version already
recorded does nothing) and by content (a new version with the same bytes
keeps the existing chunks, and tells the index about the new version).

The dedup lifecycle: a document that is quarantined or removed leaves the dedup
ledger; a duplicate remembers its canonical in ``dedup#dupes#<canonical>``
(written with its record). When a canonical goes away or changes, the same
commit asks for its duplicates to be processed again ("Document Reprocess
Requested", back to this stage): the first becomes canonical, is indexed and
goes into datasets, and the dedup log says so. Boilerplate changes ask the same
of the documents holding the paragraph, so the chunks never depend on the order
documents arrived in. Each request is its own message: a fault costs one
document's retry, not a cascade's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from docllm.bootstrap import Platform
from docllm.events.aws import S3ObjectEvent
from docllm.events.contracts import (
    DocumentProcessed,
    DocumentQuarantined,
    DocumentRemoved,
    DocumentReprocessRequested,
    EventDetail,
    RawBucketRef,
    RawObjectRef,
    ReprocessReason,
)
from docllm.exceptions import NotFoundError
from docllm.ports.objects import ObjectInfo
from docllm.ports.state import MAX_TRANSACT_ITEMS, Delete, Put, Write
from docllm.records import DOCS_PK, DocumentRecord, utcnow
from docllm.service_layer.evaluate import BENCHMARKS_PREFIX
from docllm.service_layer.outbox import commit, new_revision

if TYPE_CHECKING:
    from docllm.ingest.dedup import Followups

Outcome = Literal["processed", "duplicate", "quarantined", "removed", "unchanged", "stale", "ignored"]

#: ``dedup#dupes#<canonical>`` / ``<duplicate key>``: who duplicates whom, with the canonical's
#: cleaned-text hash at the time (a canonical whose content changed sets its duplicates free).
DUPES_PK = "dedup#dupes#"


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


def _save(
    p: Platform,
    record: DocumentRecord,
    previous: DocumentRecord | None,
    events: list[EventDetail],
    followups: Followups | None = None,
    *,
    content_hash: str | None = None,
    supersedes: list[str] | None = None,
) -> DocumentRecord:
    """Commit ``record`` (with its duplicate link), ``events`` and what the dedup ledger asked for
    (markers, reprocess requests) in one transaction."""
    writes: list[Write] = [Put(DOCS_PK, record.doc_key, record.model_dump(mode="json"))]
    old = previous.duplicate_of if previous and previous.status == "duplicate" else None
    new = record.duplicate_of if record.status == "duplicate" else None
    if old and old != new:
        writes.append(Delete(DUPES_PK + old, record.doc_key))
    if new:
        from docllm.ingest.dedup import DedupLedger

        fp = DedupLedger(p.state).content_hash(new)
        writes.append(Put(DUPES_PK + new, record.doc_key, {"canonical_content_sha256": fp}))
    requests: list[EventDetail] = []
    if followups is not None:
        writes += followups.writes
        requests = [_reprocess_request(p, k, "boilerplate_changed") for k in followups.reprocess]
    requests += [
        _reprocess_request(p, k, "canonical_changed", record.doc_key) for k in _orphans(p, record, content_hash)
    ]
    # Documents processed earlier that this one now supersedes (its key sorts first) are asked to be
    # judged again in the same commit: a crash after it cannot leave two indexed copies.
    requests += [_reprocess_request(p, k, "superseded", record.doc_key) for k in supersedes or []]
    # A transaction holds at most MAX_TRANSACT_ITEMS writes: requests beyond go out first, on their
    # own (a request answered twice changes nothing; one never sent would be lost).
    room = max(0, MAX_TRANSACT_ITEMS - len(writes) - len(events))
    for i in range(room, len(requests), MAX_TRANSACT_ITEMS):
        commit(p, [], requests[i : i + MAX_TRANSACT_ITEMS])
    commit(p, writes, [*events, *requests[:room]])
    return record


def _reprocess_request(
    p: Platform, key: str, reason: ReprocessReason, former: str | None = None
) -> DocumentReprocessRequested:
    record = load_record(p, key)
    version = record.version_id if record is not None else ""
    return DocumentReprocessRequested(
        bucket=RawBucketRef(name=p.settings.raw_bucket),
        object=RawObjectRef(key=key, version_id=version),
        reason=reason,
        former_canonical=former,
        reprocess_id=uuid.uuid4().hex,
    )


def _orphans(p: Platform, canonical: DocumentRecord, content_hash: str | None) -> list[str]:
    """The duplicates of ``canonical`` that its new state sets free: all of them when it leaves
    (removed, quarantined), those judged against other content when its content changed."""
    from docllm.ingest.dedup import DedupLedger

    links = list(p.state.query(DUPES_PK + canonical.doc_key))
    if not links:
        return []
    if canonical.status in ("removed", "quarantined"):
        current = None
    else:
        # The fingerprint committed with this record; the ledger's own item still holds the previous one.
        current = content_hash or DedupLedger(p.state).content_hash(canonical.doc_key)
    return [k for k, link in links if current is None or link.get("canonical_content_sha256") != current]


def _stamp(record: DocumentRecord) -> DocumentRecord:
    record.revision, record.updated_at = new_revision(), utcnow()
    return record


def handle_object_event(p: Platform, event: dict[str, Any]) -> IngestResult:
    if event.get("detail-type") == DocumentReprocessRequested.DETAIL_TYPE:
        from docllm.events.contracts import parse_detail

        return reprocess_document(p, parse_detail(event, DocumentReprocessRequested))
    s3 = S3ObjectEvent.model_validate(event)
    bucket = s3.detail.bucket.name
    key = s3.detail.object.key
    version = s3.detail.object.version_id or s3.detail.object.etag or ""
    if bucket != p.settings.raw_bucket:
        return IngestResult(key, "ignored", f"bucket {bucket} is not the raw bucket")
    if key.startswith(BENCHMARKS_PREFIX):
        # Evaluation benchmarks hold expected answers: as documents they would leak into the
        # training data and the search index. The template's rule already filters them out; this
        # holds for any other way an event gets here (a replay, a rule edited by hand).
        return IngestResult(key, "ignored", f"not a document: {BENCHMARKS_PREFIX} holds evaluation benchmarks")
    if s3.detail_type == "Object Deleted":
        return remove_document(p, bucket, key, version)
    return ingest_document(p, bucket, key, version)


def ingest_document(p: Platform, bucket: str, key: str, version: str, *, force: bool = False) -> IngestResult:
    """Process the current version ``version`` of ``key``; ``force`` redoes a version already recorded
    (a duplicate whose canonical went away, a document whose boilerplate changed)."""
    from docllm.ingest.pipeline import IngestConfig, Processed, process_document

    try:
        head = p.objects.head(bucket, key)
    except NotFoundError:
        return IngestResult(key, "stale", "the object was deleted before it was processed")
    if (head.version_id or head.etag) != version:
        # A newer version (or a delete) exists; its own event will process it.
        return IngestResult(key, "stale", f"version {version} is no longer current")
    record = load_record(p, key)
    if (
        not force
        and record
        and record.version_id == version
        and record.status in ("processed", "duplicate", "quarantined")
    ):
        # Committed with its events and its reprocess requests: nothing is left to do.
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
        too_large = f"{head.size} bytes is over the {config.max_bytes}-byte limit"
        return _quarantine(p, base, record, None, code="too_large", reason=too_large)

    data = p.objects.get(bucket, key, version_id=head.version_id)
    sha = hashlib.sha256(data).hexdigest()
    if not force and record and record.sha256 == sha and record.status in ("processed", "duplicate"):
        return _move_version(p, record, version, head)

    result = process_document(data, doc_key=key, doc_version=version, service=service, config=config)
    if not isinstance(result, Processed):
        return _quarantine(p, base, record, sha, code=result.reason_code, reason=result.reason)
    return _store_processed(p, base, record, sha, result)


def _move_version(p: Platform, record: DocumentRecord, version: str, head: ObjectInfo) -> IngestResult:
    """Same bytes under a new version id: nothing to redo, but the chunks file and the index follow
    the version (the index refuses chunks of a version that is not the record's)."""
    previous = record.model_copy()
    chunks = [json.dumps({**c, "doc_version": version}, ensure_ascii=False) for c in _read_chunks(p, record.doc_key)]
    chunks_uri = _write_chunks(p, record.doc_key, version, record.sha256 or "", chunks)
    record = _stamp(record.model_copy(update={"version_id": version, "etag": head.etag, "chunks_uri": chunks_uri}))
    _save(p, record, previous, [_processed_event(record)])
    return IngestResult(record.doc_key, "unchanged", "same content as the processed version")


def _processed_event(record: DocumentRecord) -> DocumentProcessed:
    assert record.sha256 is not None and record.chunks_uri is not None
    return DocumentProcessed(
        doc_key=record.doc_key,
        bucket=record.bucket,
        version_id=record.version_id,
        sha256=record.sha256,
        service=record.service,
        title=record.title or record.doc_key,
        language=record.language or "en",
        content_format=record.content_format or "text",
        chunks_uri=record.chunks_uri,
        chunk_count=record.chunk_count,
        token_estimate=record.token_estimate,
        duplicate_of=record.duplicate_of,
        revision=record.revision,
    )


def _store_processed(
    p: Platform, base: DocumentRecord, previous: DocumentRecord | None, sha: str, result: Any
) -> IngestResult:
    from docllm.ingest.dedup import DedupLedger, apply_boilerplate

    # An overwrite is never judged a duplicate of its old self: decide() forgets a changed fingerprint.
    decision = DedupLedger(p.state).decide(base.doc_key, base.service, result.fingerprint)
    if decision.boilerplate_hashes and not decision.duplicate_of:
        result = apply_boilerplate(result, decision.boilerplate_hashes)
    chunks = [] if decision.duplicate_of else result.chunks
    chunks_uri = _write_chunks(p, base.doc_key, base.version_id, sha, chunks)
    record = _stamp(
        base.model_copy(
            update={
                "sha256": sha,
                "status": "duplicate" if decision.duplicate_of else "processed",
                "duplicate_of": decision.duplicate_of,
                "title": result.title,
                "language": result.language,
                "content_format": result.content_format,
                "chunks_uri": chunks_uri,
                "chunk_count": len(chunks),
                "token_estimate": sum(c.token_estimate for c in chunks),
            }
        )
    )
    _save(
        p,
        record,
        previous,
        [_processed_event(record)],
        decision.followups,
        content_hash=result.fingerprint.content_sha256,
        supersedes=decision.supersedes,
    )
    p.metrics.put("DocumentsProcessed", 1, dimensions={"service": record.service})
    p.metrics.put("ChunksWritten", len(chunks), dimensions={"service": record.service})
    return IngestResult(record.doc_key, "duplicate" if decision.duplicate_of else "processed")


def _write_chunks(p: Platform, doc_key: str, version: str, sha: str, chunks: list[Any]) -> str:
    body = "".join((c if isinstance(c, str) else c.model_dump_json()) + "\n" for c in chunks).encode("utf-8")
    p.objects.put(
        p.settings.processed_bucket,
        chunks_key(doc_key),
        body,
        metadata={"doc-version": version, "source-sha256": sha},
        content_type="application/x-ndjson",
    )
    return f"s3://{p.settings.processed_bucket}/{chunks_key(doc_key)}"


def _read_chunks(p: Platform, doc_key: str) -> list[dict[str, Any]]:
    """The stored chunks of ``doc_key``, as JSON objects."""
    try:
        body = p.objects.get(p.settings.processed_bucket, chunks_key(doc_key)).decode("utf-8")
    except NotFoundError:
        return []
    # split on "\n" only: JSON strings may hold U+2028 and other line breaks of splitlines().
    return [json.loads(line) for line in body.split("\n") if line.strip()]


def reprocess_document(p: Platform, request: DocumentReprocessRequested) -> IngestResult:
    """Process a recorded version again, if the request still applies to it."""
    key, version = request.object.key, request.object.version_id
    record = load_record(p, key)
    if record is None or record.version_id != version:
        return IngestResult(key, "stale", "the document moved on; its own event processes it")
    if request.reason == "canonical_changed":
        if record.status != "duplicate" or record.duplicate_of != request.former_canonical:
            return IngestResult(key, "stale", f"no longer a duplicate of {request.former_canonical}")
        from docllm.ingest.dedup import DedupLedger

        DedupLedger(p.state).record_promotion(
            key, request.former_canonical or "", f"its canonical {request.former_canonical} was removed or changed"
        )
    elif record.status != "processed":
        # boilerplate_changed, superseded: only a processed document has chunks to change.
        return IngestResult(key, "stale", f"a {record.status} document has no chunks to change")
    return ingest_document(p, request.bucket.name, key, version, force=True)


def _quarantine(
    p: Platform, base: DocumentRecord, previous: DocumentRecord | None, sha: str | None, *, code: str, reason: str
) -> IngestResult:
    from docllm.ingest.dedup import DedupLedger

    record = _stamp(
        base.model_copy(
            update={
                "sha256": sha,
                "status": "quarantined",
                "reason_code": code,
                "reason": reason,
                "chunk_count": 0,
                "token_estimate": 0,
            }
        )
    )
    # A quarantined document is no document's canonical and must not be judged a duplicate target.
    followups = DedupLedger(p.state).forget(base.doc_key)
    # A quarantined overwrite must not leave the previous version's chunks searchable.
    with contextlib.suppress(NotFoundError):
        p.objects.delete(p.settings.processed_bucket, chunks_key(base.doc_key))
    _save(
        p,
        record,
        previous,
        [
            DocumentQuarantined(
                doc_key=record.doc_key,
                bucket=record.bucket,
                version_id=record.version_id,
                sha256=sha,
                reason_code=code,
                reason=reason,
            ),
            DocumentRemoved(
                doc_key=record.doc_key, bucket=record.bucket, version_id=record.version_id, revision=record.revision
            ),
        ],
        followups,
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

    followups = DedupLedger(p.state).forget(key)
    with contextlib.suppress(NotFoundError):
        p.objects.delete(p.settings.processed_bucket, chunks_key(key))
    updated = _stamp(
        record.model_copy(
            update={
                "status": "removed",
                "version_id": version or record.version_id,
                "chunk_count": 0,
                "token_estimate": 0,
            }
        )
    )
    _save(
        p,
        updated,
        record,
        [DocumentRemoved(doc_key=key, bucket=bucket, version_id=version or None, revision=updated.revision)],
        followups,
    )
    p.metrics.put("DocumentsRemoved", 1)
    return IngestResult(key, "removed")
