"""Deduplication: exact and near-duplicate documents, and boilerplate paragraphs.

Three signals, all computed from the cleaned text by :func:`fingerprint`:

* ``content_sha256`` -- exact duplicates within a service (across services a copy stays
  findable in each; dataset builds drop the second copy);
* ``minhash`` -- 64 MinHash values over 16-byte shingles; near duplicates
  are found with LSH banding (8 bands x 8 rows) and confirmed by the estimated
  Jaccard similarity against ``near_dup_threshold``;
* ``paragraph_hashes`` -- one hash per prose paragraph of at least
  ``MIN_PARAGRAPH_CHARS`` characters (never code, never headings); a paragraph
  found in ``boilerplate_min_docs`` documents or more of the same service is
  boilerplate.

:class:`DedupLedger` keeps these in the :class:`~docllm.ports.state.StateStore`
under ``dedup#...`` partitions.  Every write is keyed by ``doc_key`` so a
redelivered event changes nothing, and every decision is a pure function of the
ledger's contents: the canonical document of a duplicate group is the smallest
``doc_key``, whatever the order of arrival.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from docllm.ingest.chunker import chunk_id
from docllm.ingest.models import Chunk
from docllm.ingest.text import Block, estimate_tokens
from docllm.ports.state import MAX_TRANSACT_ITEMS, Delete, Put, StateStore, Write
from docllm.records import utcnow

if TYPE_CHECKING:
    from docllm.ingest.pipeline import Processed

NUM_PERM = 64
LSH_BANDS = 8
LSH_ROWS = NUM_PERM // LSH_BANDS
SHINGLE_BYTES = 16
MIN_PARAGRAPH_CHARS = 30

# Fixed seed: fingerprints must compare across processes, hosts and releases.
_RNG = np.random.RandomState(20240611)
# Multiply-shift hashing (Dietzfelbinger): odd 64-bit multipliers, the top 32 bits of
# ``a*x + b`` are one permutation; no modulo, so the whole signature is three numpy ops.
_PERM_A = _RNG.randint(0, 1 << 62, size=NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_PERM_B = _RNG.randint(0, 1 << 62, size=NUM_PERM, dtype=np.uint64)
_MIX_A = np.uint64(0x9E3779B97F4A7C15)
_MIX_B = np.uint64(0xC2B2AE3D27D4EB4F)
_SHIFT = np.uint64(32)
_EMPTY_MINHASH = [0xFFFFFFFF] * NUM_PERM

Action = Literal["duplicate_document", "near_duplicate_document", "boilerplate_paragraphs", "supersedes", "promoted"]


class Fingerprint(BaseModel):
    """What the ledger needs to know about one document's content."""

    content_sha256: str = Field(description="sha256 of the normalised text (all blocks, rendered)")
    minhash: list[int] = Field(description=f"{NUM_PERM} MinHash values over {SHINGLE_BYTES}-byte shingles")
    paragraph_hashes: list[str] = Field(description="hashes of prose paragraphs, in document order")


class DedupLogEntry(BaseModel):
    """One line of the dedup log: what was dropped, why, and duplicate of what."""

    doc_key: str
    action: Action
    duplicate_of: str | None = None
    similarity: float | None = None
    detail: str
    at: str


@dataclass
class Followups:
    """What a ledger change asks of the caller's commit: state writes that must be atomic with the
    document's own record (boilerplate markers; the forgotten document's ledger item), and the
    documents to process again (their boilerplate changed). Committed with the record, they survive
    any crash: a retry before the commit computes the same followups again."""

    writes: list[Write] = field(default_factory=list)
    reprocess: list[str] = field(default_factory=list)

    def add(self, other: Followups) -> None:
        self.writes += other.writes
        self.reprocess = sorted(set(self.reprocess) | set(other.reprocess))


class DedupDecision(BaseModel):
    """The ledger's verdict on one document."""

    duplicate_of: str | None = Field(default=None, description="canonical doc this one duplicates")
    similarity: float | None = Field(default=None, description="1.0 exact, else estimated Jaccard")
    boilerplate_hashes: set[str] = Field(default_factory=set, description="paragraphs to drop")
    supersedes: list[str] = Field(
        default_factory=list,
        description="documents processed earlier that are now duplicates of this one (larger doc_keys)",
    )
    log: list[DedupLogEntry] = Field(default_factory=list)
    followups: Followups = Field(default_factory=Followups, description="what the caller commits with the record")


def paragraph_hash(text: str) -> str:
    """Hash of one prose paragraph as it appears in chunk text (16 hex digits).

    Examples
    --------
    >>> len(paragraph_hash("To use this example, replace the placeholders."))
    16
    """
    return hashlib.blake2b(text.strip().encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


# One bytes.translate pass (C, memory speed) folds ASCII case and deletes ASCII
# whitespace, so shingles ignore both.  Non-ASCII letters keep their case: folding them
# would need str.lower() over the whole text, several times the cost, for a signal
# that near-duplicate detection does not need.
_FOLD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_ASCII_WS = b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
_SAMPLE_LIMIT = np.uint64(1 << 60)  # keep shingles whose top 4 bits are zero: 1 in 16


def minhash_signature(text: str) -> list[int]:
    """MinHash of the 16-byte shingles of ``text`` (ASCII case folded, whitespace removed).

    Shingles are read straight from the UTF-8 buffer with numpy (two overlapping
    64-bit views with a one-byte stride), then sampled by their own hash (1 in 16):
    a sample chosen by content is the same in every document, so the estimate of the
    Jaccard similarity stays unbiased while the cost drops sixteenfold.

    Examples
    --------
    >>> a = minhash_signature("the quick brown fox jumps over the lazy dog " * 3)
    >>> a == minhash_signature("The quick  brown fox jumps over the lazy dog " * 3)
    True
    >>> a == minhash_signature("the quick brown fox jumps over the lazy cat " * 3)
    False
    """
    buf = np.frombuffer(text.encode("utf-8", "surrogatepass").translate(_FOLD, _ASCII_WS), dtype=np.uint8)
    size = int(buf.size)
    if size < 16:
        if not size:
            return list(_EMPTY_MINHASH)
        shingles = np.array([zlib.crc32(buf.tobytes())], dtype=np.uint64) << _SHIFT
    else:
        # words[p] = the eight bytes at offset p (an unaligned view, no copy); a shingle
        # is the pair of words at p and p + 8.
        words = np.ndarray((size - 7,), dtype="<u8", buffer=buf, strides=(1,))
        shingles = words[:-8] * _MIX_A
        shingles ^= words[8:] * _MIX_B
        sampled = shingles[shingles < _SAMPLE_LIMIT]
        # A short text may have no shingle in the sample: then it keeps them all.
        shingles = sampled if sampled.size else shingles
    values = np.multiply.outer(shingles >> _SHIFT, _PERM_A)
    values += _PERM_B
    # The shift is monotonic, so it is applied to the 64 minima, not to every value.
    signature: list[int] = (values.min(axis=0) >> _SHIFT).tolist()
    return signature


def jaccard(a: list[int], b: list[int]) -> float:
    """Estimated Jaccard similarity of two MinHash signatures."""
    if len(a) != len(b) or not a:
        return 0.0
    return sum(1 for x, y in zip(a, b, strict=True) if x == y) / len(a)


def fingerprint(blocks: Iterable[Block]) -> Fingerprint:
    """Fingerprint of extracted, cleaned blocks.

    Examples
    --------
    >>> fp = fingerprint([Block("text", "A paragraph long enough to be counted as one.")])
    >>> len(fp.paragraph_hashes), len(fp.minhash)
    (1, 64)
    """
    blocks = list(blocks)
    text = "\n\n".join(b.render() if b.kind == "heading" else b.text for b in blocks)
    return Fingerprint(
        content_sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        minhash=minhash_signature(text),
        paragraph_hashes=[
            # paragraph_hash inlined: one Python call less per paragraph.
            blake2b(b.text.strip().encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
            for b in blocks
            if b.kind == "text" and len(b.text) >= MIN_PARAGRAPH_CHARS
        ],
    )


# --- applying boilerplate to chunk text ---------------------------------------------

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_HEADING_LINE = re.compile(r"^#{1,6} ")


def split_rendered(text: str) -> list[str]:
    """Split chunk text back into its blocks: blank-line separated, fences kept whole."""
    parts: list[str] = []
    current: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        if fence is None:
            m = _FENCE.match(line)
            if m is not None:
                fence = m.group(1)
            elif not line.strip():
                if current:
                    parts.append("\n".join(current))
                    current = []
                continue
        else:
            s = line.strip()
            if s and s[0] == fence[0] and len(s) >= len(fence) and s == s[0] * len(s):
                fence = None
        current.append(line)
    if current:
        parts.append("\n".join(current))
    return parts


def apply_boilerplate(processed: Processed, boilerplate_hashes: set[str]) -> Processed:
    """Drop boilerplate paragraphs from a document's chunks.

    Chunk boundaries are kept; a chunk left with no prose or code is dropped.  Ids
    are content-addressed, so untouched chunks keep theirs; positions are renumbered.

    Examples
    --------
    >>> # processed = apply_boilerplate(processed, decision.boilerplate_hashes)
    """
    if not boilerplate_hashes:
        return processed
    chunks: list[Chunk] = []
    seen: dict[tuple[str, str], int] = {}
    for chunk in processed.chunks:
        parts = split_rendered(chunk.text)
        kept = [
            p for p in parts if _HEADING_LINE.match(p) or _FENCE.match(p) or paragraph_hash(p) not in boilerplate_hashes
        ]
        if not any(not _HEADING_LINE.match(p) for p in kept):
            continue
        new_text = chunk.text if len(kept) == len(parts) else "\n\n".join(kept)
        key = ("\x1f".join(chunk.heading_path), new_text)
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        chunks.append(
            chunk.model_copy(
                update={
                    "text": new_text,
                    "position": len(chunks),
                    "chunk_id": chunk_id(chunk.doc_key, chunk.heading_path, new_text, occurrence),
                    "token_estimate": estimate_tokens(new_text),
                }
            )
        )
    return processed.model_copy(update={"chunks": chunks, "token_estimate": sum(c.token_estimate for c in chunks)})


# --- the ledger ---------------------------------------------------------------------

DOCS_PK = "dedup#doc"
#: Exact and near duplicates are judged within a service (``dedup#sha#<service>#<sha>``): the same
#: page under two services stays findable in each (docs/decisions.md, "Duplicates across services").
SHA_PK = "dedup#sha#"
LSH_PK = "dedup#lsh#"
PARA_PK = "dedup#para#"
LOG_PK = "dedup#log"
#: ``dedup#bp#<service>`` / paragraph hash: the paragraph is boilerplate and the documents that kept it
#: before it became so have been asked to lose it (the marker commits with that request).
BOILERPLATE_PK = "dedup#bp#"
_SEP = "\x1f"  # between doc_key and the rest of a sort key: it cannot appear in an S3 key


class DedupLedger:
    """Registers fingerprints in the state store and decides duplicates and boilerplate.

    Parameters
    ----------
    state
        Any :class:`~docllm.ports.state.StateStore` (SQLite locally, DynamoDB on AWS).
    near_dup_threshold
        Estimated Jaccard similarity of shingle sets at or above which two
        documents are near duplicates.
    boilerplate_min_docs
        A paragraph in at least this many documents of one service is boilerplate.
    clock
        Returns the timestamp written into log entries (injected for tests).

    Examples
    --------
    >>> # ledger = DedupLedger(SqliteStateStore(path))
    >>> # decision = ledger.decide("s3/a.md", "s3", processed.fingerprint)
    """

    def __init__(
        self,
        state: StateStore,
        *,
        near_dup_threshold: float = 0.9,
        boilerplate_min_docs: int = 5,
        clock: Callable[[], str] = utcnow,
    ) -> None:
        if not 0.0 < near_dup_threshold <= 1.0:
            raise ValueError("near_dup_threshold must be in (0, 1]")
        if boilerplate_min_docs < 2:
            raise ValueError("boilerplate_min_docs must be at least 2")
        self._state = state
        self.near_dup_threshold = near_dup_threshold
        self.boilerplate_min_docs = boilerplate_min_docs
        self._clock = clock

    # registration ------------------------------------------------------------------

    @staticmethod
    def _bands(minhash: list[int]) -> list[str]:
        return [
            f"{i}#"
            + hashlib.blake2b(
                b",".join(str(v).encode() for v in minhash[i * LSH_ROWS : (i + 1) * LSH_ROWS]), digest_size=8
            ).hexdigest()
            for i in range(LSH_BANDS)
        ]

    def _register(self, doc_key: str, service: str, fp: Fingerprint) -> Put:
        """Register the lookup entries now (the decision queries them) and return the document's own
        item, which the caller commits with the record: until then a retry finds the previous
        fingerprint and redoes what replacing it asked (forgetting it, boilerplate followups)."""
        paragraphs = sorted(set(fp.paragraph_hashes))
        own = Put(DOCS_PK, doc_key, {"service": service, "fingerprint": fp.model_dump(), "paragraphs": paragraphs})
        writes: list[Write] = [
            Put(f"{SHA_PK}{service}#{fp.content_sha256}", doc_key, {"doc_key": doc_key}),
            *(Put(f"{LSH_PK}{service}#{band}", doc_key, {"doc_key": doc_key}) for band in self._bands(fp.minhash)),
            *(Put(PARA_PK + service, f"{h}#{doc_key}", {"doc_key": doc_key}) for h in paragraphs),
        ]
        self._write(writes)
        return own

    def _write(self, writes: list[Write]) -> None:
        """In transactions of the store's largest size: one round trip for most documents, and
        a fingerprint is registered (or forgotten) whole unless it spans several."""
        for i in range(0, len(writes), MAX_TRANSACT_ITEMS):
            self._state.transact(writes[i : i + MAX_TRANSACT_ITEMS])

    def forget(self, doc_key: str, *, keep: frozenset[str] = frozenset(), own_item: bool = True) -> Followups:
        """Remove a document's fingerprint (on delete, quarantine, or before an overwrite is registered).

        The lookup entries go at once; the document's own item (``own_item``) goes with the caller's
        commit (in the returned writes), so a crash before that commit leaves it for the retry to find.
        A paragraph (not in ``keep``) that this takes below ``boilerplate_min_docs`` documents stops being
        boilerplate: its marker goes and the documents still holding it are to be processed again.
        """
        item = self._state.get(DOCS_PK, doc_key)
        if item is None:
            return Followups()
        fp = Fingerprint.model_validate(item["fingerprint"])
        service = item["service"]
        paragraphs = [h for h in item.get("paragraphs", []) if h not in keep]
        self._write(
            [
                Delete(f"{SHA_PK}{service}#{fp.content_sha256}", doc_key),
                *(Delete(f"{LSH_PK}{service}#{band}", doc_key) for band in self._bands(fp.minhash)),
                *(Delete(PARA_PK + service, f"{h}#{doc_key}") for h in item.get("paragraphs", [])),
            ]
        )
        out = Followups(writes=[Delete(DOCS_PK, doc_key)] if own_item else [])
        for h in paragraphs:
            holders = self._holders(service, h)
            if len(holders) < self.boilerplate_min_docs and self._state.get(BOILERPLATE_PK + service, h) is not None:
                out.add(Followups(writes=[Delete(BOILERPLATE_PK + service, h)], reprocess=holders))
        return out

    def _holders(self, service: str, paragraph: str) -> list[str]:
        """The documents of ``service`` holding ``paragraph``, in key order."""
        return [str(item["doc_key"]) for _, item in self._state.query(PARA_PK + service, f"{paragraph}#")]

    # decisions ---------------------------------------------------------------------

    def decide(self, doc_key: str, service: str, fp: Fingerprint) -> DedupDecision:
        """Register ``fp`` for ``doc_key`` and decide duplicates and boilerplate.

        Deterministic given the ledger's contents; calling it again with the same
        fingerprint (a redelivered event) returns the same decision.

        Boilerplate does not depend on the order documents arrive in: when this document brings a
        paragraph to ``boilerplate_min_docs`` documents, the decision's followups mark the paragraph
        and name the documents processed before (which kept it) to be processed again; when an
        overwrite takes a paragraph below the threshold, the others are named to get it back.
        """
        followups = Followups()
        previous = self._state.get(DOCS_PK, doc_key)
        if previous is not None and (previous["fingerprint"] != fp.model_dump() or previous["service"] != service):
            kept = frozenset(fp.paragraph_hashes) if previous["service"] == service else frozenset()
            followups.add(self.forget(doc_key, keep=kept, own_item=False))  # register() rewrites the item
        followups.writes.append(self._register(doc_key, service, fp))
        at = self._clock()
        log: list[DedupLogEntry] = []

        # Exact duplicates: the smallest doc_key with the same content is canonical.
        same = sorted(k for k, _ in self._state.query(f"{SHA_PK}{service}#{fp.content_sha256}"))
        duplicate_of: str | None = None
        similarity: float | None = None
        supersedes: list[str] = []
        if same and same[0] != doc_key:
            duplicate_of, similarity = same[0], 1.0
            log.append(
                DedupLogEntry(
                    doc_key=doc_key,
                    action="duplicate_document",
                    duplicate_of=duplicate_of,
                    similarity=1.0,
                    detail=f"identical cleaned text (sha256 {fp.content_sha256[:12]}) in {len(same)} documents",
                    at=at,
                )
            )
        else:
            supersedes = [k for k in same if k != doc_key]
            # Near duplicates: LSH candidates confirmed by the estimated Jaccard similarity.
            candidates: set[str] = set()
            for band in self._bands(fp.minhash):
                candidates.update(k for k, _ in self._state.query(f"{LSH_PK}{service}#{band}"))
            candidates.discard(doc_key)
            similar: list[tuple[str, float]] = []
            for other in sorted(candidates):
                other_item = self._state.get(DOCS_PK, other)
                if other_item is None or other in supersedes:
                    continue
                sim = jaccard(fp.minhash, other_item["fingerprint"]["minhash"])
                if sim >= self.near_dup_threshold:
                    similar.append((other, sim))
            smaller = [(k, s) for k, s in similar if k < doc_key]
            if smaller:
                duplicate_of, similarity = smaller[0]
                log.append(
                    DedupLogEntry(
                        doc_key=doc_key,
                        action="near_duplicate_document",
                        duplicate_of=duplicate_of,
                        similarity=similarity,
                        detail=(
                            f"estimated Jaccard {similarity:.3f} >= {self.near_dup_threshold} on "
                            f"{SHINGLE_BYTES}-byte shingle MinHash; {len(similar)} similar documents"
                        ),
                        at=at,
                    )
                )
            else:
                supersedes += [k for k, _ in similar]
        for other in supersedes:
            log.append(
                DedupLogEntry(
                    doc_key=other,
                    action="supersedes",
                    duplicate_of=doc_key,
                    detail=f"{doc_key} has the same or nearly the same content and sorts first: it is canonical",
                    at=at,
                )
            )

        boilerplate: set[str] = set()
        # Counted for duplicates too: their paragraphs count towards the threshold like any.
        for h in sorted(set(fp.paragraph_hashes)):
            holders = self._holders(service, h)
            if len(holders) >= self.boilerplate_min_docs:
                boilerplate.add(h)
                if self._state.get(BOILERPLATE_PK + service, h) is None:
                    # First to see it: the marker commits with this document (a concurrent first
                    # conflicts and retries), and the holders from before lose the paragraph.
                    marker = Put(BOILERPLATE_PK + service, h, {"since": at, "by": doc_key}, if_absent=True)
                    followups.add(Followups(writes=[marker], reprocess=[k for k in holders if k != doc_key]))
        if duplicate_of is not None:
            boilerplate = set()
        elif boilerplate:
            log.append(
                DedupLogEntry(
                    doc_key=doc_key,
                    action="boilerplate_paragraphs",
                    detail=(
                        f"{len(boilerplate)} paragraphs each found in >= {self.boilerplate_min_docs} "
                        f"documents of service {service!r}: " + ", ".join(sorted(boilerplate))
                    ),
                    at=at,
                )
            )
        # The log commits with the record (in the followups): a retried decision logs nothing twice.
        followups.writes += [
            Put(LOG_PK, f"{e.doc_key}{_SEP}{at}{_SEP}{n:04d}", e.model_dump()) for n, e in enumerate(log)
        ]
        return DedupDecision(
            duplicate_of=duplicate_of,
            similarity=similarity,
            boilerplate_hashes=boilerplate,
            supersedes=sorted(set(supersedes)),
            log=log,
            followups=followups,
        )

    def record_promotion(self, doc_key: str, former_canonical: str, why: str) -> DedupLogEntry:
        """Log that ``doc_key``, a duplicate of ``former_canonical``, was processed again because
        its canonical went away or changed (the decision of that run is logged by :meth:`decide`)."""
        at = self._clock()
        entry = DedupLogEntry(doc_key=doc_key, action="promoted", duplicate_of=former_canonical, detail=why, at=at)
        self._state.put(LOG_PK, f"{doc_key}{_SEP}{at}{_SEP}promoted", entry.model_dump())
        return entry

    def content_hash(self, doc_key: str) -> str | None:
        """The registered cleaned-text hash of ``doc_key``, or None when it has no fingerprint."""
        item = self._state.get(DOCS_PK, doc_key)
        return None if item is None else str(item["fingerprint"]["content_sha256"])

    def log(self, doc_key: str | None = None) -> list[DedupLogEntry]:
        """Log entries, oldest first per document; all documents when ``doc_key`` is None."""
        prefix = "" if doc_key is None else doc_key + _SEP
        return [DedupLogEntry.model_validate(item) for _, item in self._state.query(LOG_PK, prefix)]
