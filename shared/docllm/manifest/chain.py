"""The hash chain of a family's manifests: numbered 1, 2, 3…, each naming its predecessor's digest.

Entry *n* of family *f* is stored once, under :func:`manifest_key` ``(f, n)``, and its statement
says ``chain = {family: f, sequence: n, previous_sha256: sha256(stored bytes of entry n-1)}``
(``None`` for entry 1). Since each digest covers the whole stored envelope of the previous
entry, which itself holds *its* predecessor's digest, removing, replacing or reordering any
entry breaks a link that :func:`check_chain` names. The sequence number alone is the store key
(the model version is inside), so the write-once store itself decides which decision gets a
number: two issuers racing for the same number cannot both write it.

Pure: callers read the store and pass :class:`StoredEntry` values in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, Field

from docllm.manifest.report import Mismatch

_FAMILY = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
_KEY = re.compile(r"^manifests/(?P<family>[^/]+)/(?P<seq>\d{8})\.json$")


class ChainLink(BaseModel):
    """The chain position a statement declares (``internalParameters.chain``)."""

    family: str
    sequence: int = Field(ge=1)
    previous_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


def family_prefix(family: str) -> str:
    """Store prefix of a family's chain (``manifests/<family>/``)."""
    if not _FAMILY.match(family):
        raise ValueError(f"not a family name: {family!r}")
    return f"manifests/{family}/"


def manifest_key(family: str, sequence: int) -> str:
    """``manifests/<family>/<sequence:08d>.json``: where entry ``sequence`` is stored.

    >>> manifest_key("tiny-s3", 3)
    'manifests/tiny-s3/00000003.json'
    """
    if sequence < 1:
        raise ValueError(f"sequence numbers start at 1, got {sequence}")
    return f"{family_prefix(family)}{sequence:08d}.json"


def sequence_of(key: str) -> int | None:
    """The sequence number a store key holds, or None for a key that is no chain entry.

    >>> sequence_of("manifests/tiny-s3/00000012.json"), sequence_of("manifests/tiny-s3/notes.txt")
    (12, None)
    """
    m = _KEY.match(key)
    return int(m.group("seq")) if m else None


def state_pk(family: str) -> str:
    """State partition of a family's chain records (sort key ``<sequence:08d>``)."""
    return f"manifests#{family}"


@dataclass(frozen=True)
class StoredEntry:
    """One chain entry as read back from the store.

    ``link`` is what its statement declares (None when the envelope could not be decoded);
    ``sha256`` is the digest of its stored bytes.
    """

    key: str
    sha256: str
    link: ChainLink | None


@dataclass(frozen=True)
class RecordedEntry:
    """What the state remembers of a chain entry (``pk=manifests#<family>``)."""

    sequence: int
    key: str
    sha256: str


def check_chain(family: str, stored: list[StoredEntry], recorded: list[RecordedEntry]) -> list[Mismatch]:
    """Every break in a family's chain, named.

    * entries must be numbered 1..n with no gap (a removed entry leaves a gap);
    * each entry's declared family and sequence must match its key (a swapped entry does not);
    * each ``previous_sha256`` must be the digest of the stored entry before it;
    * the state's records and the store must agree: each recorded entry present with the
      recorded digest (a removed *last* entry leaves no gap, but its record remains), and each
      stored entry recorded (an unrecorded entry is one whose issuer did not commit, yet).

    >>> check_chain("f", [], [])
    []
    """
    problems: list[Mismatch] = []
    by_seq: dict[int, StoredEntry] = {}
    for entry in stored:
        seq = sequence_of(entry.key)
        if seq is None:
            problems.append(Mismatch(kind="chain", subject=entry.key, detail="not a chain entry key"))
            continue
        by_seq[seq] = entry
    last = max([*by_seq, *(r.sequence for r in recorded)], default=0)
    for seq in range(1, last + 1):
        at = by_seq.get(seq)
        if at is None:
            problems.append(
                Mismatch(
                    kind="chain",
                    subject=manifest_key(family, seq),
                    detail=f"entry {seq} of {last} is missing from the store",
                )
            )
            continue
        problems.extend(_check_link(family, seq, at, by_seq.get(seq - 1)))
    for rec in recorded:
        found = by_seq.get(rec.sequence)
        if found is not None and found.sha256 != rec.sha256:
            problems.append(
                Mismatch(
                    kind="state",
                    subject=rec.key,
                    expected=rec.sha256,
                    actual=found.sha256,
                    detail="the stored entry is not the one the state recorded",
                )
            )
    recorded_seqs = {r.sequence for r in recorded}
    for seq, entry in sorted(by_seq.items()):
        if seq not in recorded_seqs:
            problems.append(
                Mismatch(
                    kind="state",
                    subject=entry.key,
                    detail="stored but not recorded in the state (an issue that did not commit)",
                )
            )
    return problems


def _check_link(family: str, seq: int, entry: StoredEntry, previous: StoredEntry | None) -> list[Mismatch]:
    link = entry.link
    if link is None:
        return [Mismatch(kind="chain", subject=entry.key, detail="the envelope's statement cannot be read")]
    problems: list[Mismatch] = []
    if link.family != family or link.sequence != seq:
        problems.append(
            Mismatch(
                kind="chain",
                subject=entry.key,
                expected=f"{family}#{seq}",
                actual=f"{link.family}#{link.sequence}",
                detail="the entry declares another chain position than the one it is stored at (moved or swapped)",
            )
        )
    expected_previous = None if seq == 1 else (previous.sha256 if previous else None)
    if seq > 1 and previous is None:
        return problems  # the gap is reported once, by the caller
    if link.previous_sha256 != expected_previous:
        problems.append(
            Mismatch(
                kind="chain",
                subject=entry.key,
                expected=expected_previous,
                actual=link.previous_sha256,
                detail="previous_sha256 is not the digest of the stored entry before it",
            )
        )
    return problems
