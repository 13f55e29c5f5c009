"""Dict-backed fakes of the state and object ports, plus builders of processed documents."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from docllm.exceptions import ConflictError, NotFoundError
from docllm.ingest.dedup import DedupDecision, DedupLedger, Fingerprint
from docllm.ingest.models import Chunk
from docllm.ports.objects import ObjectInfo, ObjectStore
from docllm.ports.state import Item, Put, StateStore, Write, check_transact
from docllm.records import DOCS_PK, DocumentRecord


class DictState(StateStore):
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Item] = {}

    def get(self, pk: str, sk: str) -> Item | None:
        item = self.items.get((pk, sk))
        return dict(item) if item is not None else None

    def put(self, pk: str, sk: str, item: Item, *, if_absent: bool = False) -> None:
        if if_absent and (pk, sk) in self.items:
            raise ConflictError(f"{pk}/{sk} exists")
        self.items[(pk, sk)] = dict(item)

    def delete(self, pk: str, sk: str) -> None:
        self.items.pop((pk, sk), None)

    def transact(self, writes: Sequence[Write]) -> None:
        check_transact(writes)
        if any(isinstance(w, Put) and w.if_absent and (w.pk, w.sk) in self.items for w in writes):
            raise ConflictError("a conditional write of the transaction failed")
        for w in writes:
            if isinstance(w, Put):
                self.items[(w.pk, w.sk)] = dict(w.item)
            else:
                self.delete(w.pk, w.sk)

    def query(self, pk: str, sk_prefix: str = "") -> Iterator[tuple[str, Item]]:
        for (p, s), item in sorted(self.items.items()):
            if p == pk and s.startswith(sk_prefix):
                yield s, dict(item)


class DictObjects(ObjectStore):
    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.puts: list[str] = []
        self.range_calls = 0

    def _info(self, bucket: str, key: str) -> ObjectInfo:
        body = self.blobs[(bucket, key)]
        return ObjectInfo(bucket, key, len(body), hashlib.md5(body).hexdigest(), None, datetime.now(UTC))

    def put(self, bucket: str, key: str, body: bytes, *, metadata=None, content_type=None) -> ObjectInfo:  # type: ignore[no-untyped-def]
        self.blobs[(bucket, key)] = bytes(body)
        self.puts.append(f"{bucket}/{key}")
        return self._info(bucket, key)

    def put_file(self, bucket: str, key: str, path: Path, *, metadata=None, content_type=None) -> ObjectInfo:  # type: ignore[no-untyped-def]
        return self.put(bucket, key, path.read_bytes())

    def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes:
        try:
            return self.blobs[(bucket, key)]
        except KeyError as e:
            raise NotFoundError(f"{bucket}/{key}") from e

    def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        self.range_calls += 1
        return self.get(bucket, key)[start : end + 1]

    def download_file(self, bucket: str, key: str, path: Path) -> None:
        path.write_bytes(self.get(bucket, key))

    def head(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        self.get(bucket, key)
        return self._info(bucket, key)

    def delete(self, bucket: str, key: str) -> None:
        self.blobs.pop((bucket, key), None)

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        for b, k in sorted(self.blobs):
            if b == bucket and k.startswith(prefix):
                yield self._info(b, k)

    def download_prefix(self, uri_prefix: str, dest: Path) -> None:
        """Lay a prefix out as a job channel directory (what the job runner does)."""
        bucket, _, prefix = uri_prefix[5:].partition("/")
        for info in self.list(bucket, prefix):
            target = dest / info.key[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.get(bucket, info.key))


def add_document(
    state: StateStore,
    objects: ObjectStore,
    doc_key: str,
    texts: list[str],
    *,
    service: str = "s3",
    status: str = "processed",
    revision: str = "v1",
) -> DocumentRecord:
    """Store a processed document: its chunks JSONL and its state record."""
    sha = hashlib.sha256(("\x00".join(texts) + revision).encode()).hexdigest()
    chunks = [
        Chunk(
            chunk_id=hashlib.sha256(f"{sha}:{i}".encode()).hexdigest()[:20],
            doc_key=doc_key,
            doc_version=revision,
            source_sha256=sha,
            service=service,
            title=doc_key,
            heading_path=[doc_key],
            position=i,
            language="en",
            text=t,
            token_estimate=max(1, len(t) // 4),
        )
        for i, t in enumerate(texts)
    ]
    key = f"chunks/{doc_key}.jsonl"
    objects.put("processed", key, "".join(c.model_dump_json() + "\n" for c in chunks).encode())
    rec = DocumentRecord(
        doc_key=doc_key,
        bucket="raw",
        version_id=revision,
        sha256=sha,
        service=service,
        status=status,
        chunks_uri=f"s3://processed/{key}",
        chunk_count=len(chunks),
    )
    state.put(DOCS_PK, doc_key, rec.model_dump(mode="json"))
    return rec


class CommittingLedger(DedupLedger):
    """The dedup ledger as the ingest stage uses it: each decision's followups (the document's own
    item, boilerplate markers) committed right after it, as the stage commits them with the record."""

    def decide(self, doc_key: str, service: str, fp: Fingerprint, **kw: object) -> DedupDecision:  # type: ignore[override]
        decision = super().decide(doc_key, service, fp)
        self._state.transact(decision.followups.writes)
        return decision
