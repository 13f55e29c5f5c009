"""Dataset versions: freeze the processed chunks into an immutable, content-addressed version.

A version is named by the hash of what it contains (filters, split rule, and
every document's content hash and chunk ids), so building twice with nothing
new gives the same version and writes nothing. Each document is assigned to
train / validation / test by a hash of its *key* only, so a document keeps its
split for as long as it exists, whatever else is added or changed.

Artefacts of version ``v`` under ``s3://<artifact_bucket>/datasets/<v>/``:

``train.jsonl``, ``validation.jsonl``, ``test.jsonl``
    the frozen chunk text, one ``{"chunk_id", "doc_key", "text"}`` per line,
    documents in key order, chunks in document order (what jobs read);
``manifest.json``
    :class:`DatasetManifest`, written last so its presence means "complete".

Example::

    manifest, created = build_dataset(state, objects, artifact_bucket="artifacts")
    print(manifest.version, manifest.diff.added)
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, Field, ValidationError

from docllm.dataset.exceptions import ChunksUnreadableError, DatasetNotFoundError, EmptyDatasetError
from docllm.exceptions import NotFoundError
from docllm.ingest.models import Chunk
from docllm.ports.objects import ObjectStore, split_uri
from docllm.ports.state import StateStore
from docllm.records import DOCS_PK, DocumentRecord, utcnow
from docllm.retries import retry_transient

Split = Literal["train", "validation", "test"]
DATASETS_PK = "datasets"
SPLITS: tuple[Split, ...] = ("train", "validation", "test")


class SplitRule(BaseModel):
    """How documents are assigned to splits: by a salted hash of the document key.

    Part of the version hash; changing it would move documents between splits,
    so it is a constant of the platform rather than a build option.
    """

    validation: float = Field(default=0.05, ge=0, lt=1, description="share of documents in validation")
    test: float = Field(default=0.05, ge=0, lt=1, description="share of documents in test")
    salt: str = Field(default="docllm-split-v1", description="hash salt; a new salt is a new split")


SPLIT_RULE = SplitRule()


def assign_split(doc_key: str, rule: SplitRule = SPLIT_RULE) -> Split:
    """The split of a document, from its key alone (stable across dataset versions).

    >>> assign_split("s3/UsingBucket.md") in ("train", "validation", "test")
    True
    """
    digest = hashlib.sha256(f"{rule.salt}\x00{doc_key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < rule.test:
        return "test"
    if u < rule.test + rule.validation:
        return "validation"
    return "train"


class DatasetDocument(BaseModel):
    doc_key: str
    sha256: str = Field(description="content hash of the source document")
    version_id: str | None = Field(
        default=None,
        description="the raw object version that was read (compliance manifests pin it); not part of the "
        "dataset version, which names content only",
    )
    service: str
    split: Split
    chunk_ids: list[str]
    token_estimate: int = Field(ge=0, description="ingestion's estimate; exact counts come from tokenizing")


class Counts(BaseModel):
    documents: int = 0
    chunks: int = 0
    token_estimate: int = 0


class DatasetStats(BaseModel):
    documents: int = 0
    chunks: int = 0
    token_estimate: int = 0
    bytes: int = Field(default=0, description="UTF-8 bytes of chunk text")
    per_service: dict[str, Counts] = Field(default_factory=dict)
    per_split: dict[str, Counts] = Field(default_factory=dict)


class DatasetDiff(BaseModel):
    """Document keys that differ from the previous version."""

    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list, description="same key, new content")


class SkippedDocument(BaseModel):
    doc_key: str
    reason: str


class DatasetManifest(BaseModel):
    """Everything a dataset version is, stored beside its data as ``manifest.json``."""

    schema_version: Literal[1] = 1
    version: str
    created_at: str
    family: str | None = None
    services: list[str] = Field(description="service filter; empty means every service")
    paths: list[str] = Field(default_factory=list, description="document key patterns (fnmatch); empty: any")
    languages: list[str] = Field(default_factory=list, description="ISO 639-1 codes; empty: any")
    split_rule: SplitRule = Field(default_factory=SplitRule)
    documents: list[DatasetDocument]
    stats: DatasetStats
    previous_version: str | None = None
    diff: DatasetDiff = Field(default_factory=DatasetDiff)
    skipped: list[SkippedDocument] = Field(
        default_factory=list, description="processed documents whose chunks could not be read"
    )

    def split_documents(self, split: Split) -> list[DatasetDocument]:
        return [d for d in self.documents if d.split == split]


class DatasetSummary(BaseModel):
    """What state remembers of a version (``pk="datasets"``, ``sk=version``)."""

    version: str
    created_at: str
    family: str | None = None
    services: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    manifest_uri: str
    documents: int
    chunks: int
    token_estimate: int
    per_split: dict[str, Counts] = Field(default_factory=dict)
    previous_version: str | None = None
    added: int = 0
    removed: int = 0
    changed: int = 0


def dataset_prefix(artifact_bucket: str, version: str) -> str:
    """``s3://<bucket>/datasets/<version>/`` (trailing slash: a job channel prefix)."""
    return f"s3://{artifact_bucket}/datasets/{version}/"


def _version_of(
    documents: list[DatasetDocument],
    services: list[str],
    family: str | None,
    rule: SplitRule,
    *,
    paths: list[str] | None = None,
    languages: list[str] | None = None,
) -> str:
    # Only content and filters go in: created_at, stats and the diff are derived.
    payload: dict[str, object] = {
        "schema": 1,
        "family": family,
        "services": services,
        "split_rule": rule.model_dump(),
        "documents": [[d.doc_key, d.sha256, d.chunk_ids] for d in documents],
    }
    # Path and language filters only when set, so a version built without them keeps its name.
    if paths:
        payload["paths"] = paths
    if languages:
        payload["languages"] = languages
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "ds-" + hashlib.sha256(blob).hexdigest()[:16]


def diff_manifests(a: DatasetManifest | None, b: DatasetManifest) -> DatasetDiff:
    """Documents added, removed and changed going from ``a`` to ``b``.

    >>> m = DatasetManifest(version="x", created_at="", services=[], documents=[], stats=DatasetStats())
    >>> diff_manifests(None, m).added
    []
    """
    before = {d.doc_key: d for d in a.documents} if a else {}
    after = {d.doc_key: d for d in b.documents}
    return DatasetDiff(
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
        changed=sorted(
            k
            for k in after.keys() & before.keys()
            if (after[k].sha256, after[k].chunk_ids) != (before[k].sha256, before[k].chunk_ids)
        ),
    )


def list_datasets(state: StateStore) -> list[DatasetSummary]:
    """Every dataset version, oldest first."""
    rows = [DatasetSummary.model_validate(item) for _, item in state.query(DATASETS_PK)]
    return sorted(rows, key=lambda s: (s.created_at, s.version))


def load_manifest(objects: ObjectStore, artifact_bucket: str, version: str) -> DatasetManifest:
    """Read ``datasets/<version>/manifest.json``; :class:`DatasetNotFoundError` when absent."""
    try:
        raw = retry_transient(lambda: objects.get(artifact_bucket, f"datasets/{version}/manifest.json"))
    except NotFoundError as e:
        raise DatasetNotFoundError(f"dataset version {version!r} has no manifest") from e
    return DatasetManifest.model_validate_json(raw)


def _processed_documents(
    state: StateStore, services: list[str], paths: list[str] | None = None, languages: list[str] | None = None
) -> list[DocumentRecord]:
    from docllm.training.families import DataFilter

    selected = DataFilter(services=services, paths=paths or [], languages=languages or [])
    docs = []
    for _, item in state.query(DOCS_PK):
        rec = DocumentRecord.model_validate(item)
        if rec.status != "processed" or not rec.chunks_uri:
            continue
        if not selected.matches(rec.doc_key, rec.service, rec.language):
            continue
        docs.append(rec)
    return sorted(docs, key=lambda r: r.doc_key)


def _read_chunks(objects: ObjectStore, rec: DocumentRecord) -> tuple[list[Chunk], bytes]:
    assert rec.chunks_uri is not None
    try:
        bucket, key = split_uri(rec.chunks_uri)
        raw = retry_transient(lambda: objects.get(bucket, key))
    except (NotFoundError, ValueError) as e:
        raise ChunksUnreadableError(f"{rec.doc_key}: chunks not readable at {rec.chunks_uri}: {e}") from e
    try:
        chunks = [Chunk.model_validate_json(line) for line in raw.splitlines() if line.strip()]
    except ValidationError as e:
        raise ChunksUnreadableError(f"{rec.doc_key}: invalid chunk line in {rec.chunks_uri}: {e}") from e
    return sorted(chunks, key=lambda c: c.position), raw


def _previous(
    state: StateStore, family: str | None, services: list[str], paths: list[str], languages: list[str]
) -> DatasetSummary | None:
    same = [
        s
        for s in list_datasets(state)
        if s.family == family
        and sorted(s.services) == services
        and sorted(s.paths) == paths
        and sorted(s.languages) == languages
    ]
    return same[-1] if same else None


def build_dataset(
    state: StateStore,
    objects: ObjectStore,
    *,
    artifact_bucket: str,
    services: list[str] | None = None,
    family: str | None = None,
    paths: list[str] | None = None,
    languages: list[str] | None = None,
) -> tuple[DatasetManifest, bool]:
    """Freeze the processed documents into a dataset version.

    Parameters
    ----------
    state, objects
        Ports: documents are read from ``pk="docs"``, chunks from their ``chunks_uri``.
    artifact_bucket
        Where ``datasets/<version>/`` is written.
    services
        Keep only these services (``None`` or empty: every service).
    family
        Model family the build is for; recorded and part of the version.
    paths, languages
        Keep only documents whose key matches one of these fnmatch patterns, and whose language is one
        of these (a document of unknown language passes); part of the version when set.

    Returns
    -------
    (manifest, created_new)
        ``created_new`` is False when this exact version already existed (nothing written).

    Raises
    ------
    EmptyDatasetError
        When no processed document matches the filters.

    Example
    -------
    >>> manifest, created = build_dataset(state, objects, artifact_bucket="artifacts")  # doctest: +SKIP
    """
    wanted = sorted(set(services or []))
    path_filter, language_filter = sorted(set(paths or [])), sorted(set(languages or []))
    records = _processed_documents(state, wanted, path_filter, language_filter)
    documents: list[DatasetDocument] = []
    skipped: list[SkippedDocument] = []
    stats = DatasetStats()
    with tempfile.TemporaryDirectory(prefix="docllm-dataset-") as tmp:
        # One pass over the chunks, streamed to temporary split files, so memory
        # stays bounded by one document; the files are uploaded only for a new version.
        split_paths = {s: Path(tmp) / f"{s}.jsonl" for s in SPLITS}
        handles: dict[str, IO[bytes]] = {s: split_paths[s].open("wb") for s in SPLITS}
        try:
            first_with: dict[str, str] = {}  # source sha256 -> doc_key that brought it in
            for rec in records:
                # The ingest dedup is per service; a model must not see the same page twice, so a copy
                # under another service (same source bytes) is left out, the first key in order kept.
                if rec.sha256 and rec.sha256 in first_with:
                    reason = f"same source as {first_with[rec.sha256]} (another service)"
                    skipped.append(SkippedDocument(doc_key=rec.doc_key, reason=reason))
                    continue
                if rec.sha256:
                    first_with[rec.sha256] = rec.doc_key
                try:
                    chunks, raw = _read_chunks(objects, rec)
                except ChunksUnreadableError as e:
                    skipped.append(SkippedDocument(doc_key=rec.doc_key, reason=str(e)))
                    continue
                if not chunks:
                    continue
                split = assign_split(rec.doc_key)
                doc = DatasetDocument(
                    doc_key=rec.doc_key,
                    sha256=rec.sha256 or hashlib.sha256(raw).hexdigest(),
                    version_id=rec.version_id or None,
                    service=rec.service,
                    split=split,
                    chunk_ids=[c.chunk_id for c in chunks],
                    token_estimate=sum(c.token_estimate for c in chunks),
                )
                documents.append(doc)
                for c in chunks:
                    line = json.dumps(
                        {"chunk_id": c.chunk_id, "doc_key": c.doc_key, "text": c.text}, ensure_ascii=False
                    )
                    data = line.encode("utf-8") + b"\n"
                    handles[split].write(data)
                    stats.bytes += len(c.text.encode("utf-8"))
                _count(stats, doc)
        finally:
            for h in handles.values():
                h.close()
        if not documents:
            filters = f"services={wanted or 'all'}" + (f", paths={path_filter}" if path_filter else "")
            filters += f", languages={language_filter}" if language_filter else ""
            raise EmptyDatasetError(f"no processed documents for {filters}")

        version = _version_of(documents, wanted, family, SPLIT_RULE, paths=path_filter, languages=language_filter)
        existing = state.get(DATASETS_PK, version)
        if existing is not None:
            return load_manifest(objects, artifact_bucket, version), False

        prev_summary = _previous(state, family, wanted, path_filter, language_filter)
        prev = load_manifest(objects, artifact_bucket, prev_summary.version) if prev_summary else None
        manifest = DatasetManifest(
            version=version,
            created_at=utcnow(),
            family=family,
            services=wanted,
            paths=path_filter,
            languages=language_filter,
            documents=documents,
            stats=stats,
            previous_version=prev.version if prev else None,
            skipped=skipped,
        )
        manifest.diff = diff_manifests(prev, manifest)
        for s in SPLITS:
            key = f"datasets/{version}/{s}.jsonl"
            objects.put_file(artifact_bucket, key, split_paths[s], content_type="application/x-ndjson")
    # The manifest goes last: its presence marks a complete version.
    manifest_key = f"datasets/{version}/manifest.json"
    objects.put(
        artifact_bucket,
        manifest_key,
        manifest.model_dump_json(indent=1).encode(),
        content_type="application/json",
    )
    summary = summarize(manifest, f"s3://{artifact_bucket}/{manifest_key}")
    state.put(DATASETS_PK, version, summary.model_dump(mode="json"))
    return manifest, True


def summarize(manifest: DatasetManifest, manifest_uri: str) -> DatasetSummary:
    """The state record of a manifest."""
    return DatasetSummary(
        version=manifest.version,
        created_at=manifest.created_at,
        family=manifest.family,
        services=manifest.services,
        paths=manifest.paths,
        languages=manifest.languages,
        manifest_uri=manifest_uri,
        documents=manifest.stats.documents,
        chunks=manifest.stats.chunks,
        token_estimate=manifest.stats.token_estimate,
        per_split=manifest.stats.per_split,
        previous_version=manifest.previous_version,
        added=len(manifest.diff.added),
        removed=len(manifest.diff.removed),
        changed=len(manifest.diff.changed),
    )


def _count(stats: DatasetStats, doc: DatasetDocument) -> None:
    buckets: Iterable[Counts] = (
        stats.per_service.setdefault(doc.service, Counts()),
        stats.per_split.setdefault(doc.split, Counts()),
    )
    stats.documents += 1
    stats.chunks += len(doc.chunk_ids)
    stats.token_estimate += doc.token_estimate
    for b in buckets:
        b.documents += 1
        b.chunks += len(doc.chunk_ids)
        b.token_estimate += doc.token_estimate


class SplitRecord(BaseModel):
    """One line of a frozen split file (``train.jsonl`` …)."""

    chunk_id: str
    doc_key: str
    text: str


def read_split_file(path: Path) -> Iterable[SplitRecord]:
    """Stream the records of a split file; a malformed line raises :class:`ChunksUnreadableError`."""
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                # model_construct after a plain json parse: the file was validated when written,
                # and this loop is on the encode path's hot side.
                obj = json.loads(line)
                yield SplitRecord.model_construct(
                    chunk_id=str(obj["chunk_id"]), doc_key=str(obj["doc_key"]), text=str(obj["text"])
                )
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ChunksUnreadableError(f"{path.name}:{n}: not a split record: {e}") from e
