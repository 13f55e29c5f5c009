"""How well an existing tokenizer covers new data: the share of tokens that are real pieces.

A continued run keeps its champion's tokenizer (the embedding rows mean those pieces). New text
the tokenizer was not trained on shows up as unknown pieces and byte-fallback pieces (``<0xE2>``
...): a token sequence that is longer and that the model learnt little about. The coverage of a
dataset is ``1 - (unknown + byte pieces) / all pieces`` over its train split, measured on a
deterministic sample of records to bound the time (the tokenizer job runs it, where SentencePiece
is installed; the Lambda layer has none).

Example
-------
>>> tok = SentencePieceTokenizer.from_file(Path("tokenizer.model"))        # doctest: +SKIP
>>> measure_coverage(tok, read_split_file(Path("train.jsonl"))).coverage   # doctest: +SKIP
0.9991
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from docllm.dataset.versions import SplitRecord
from docllm.tokenizer.artifacts import TokenizerResult

if TYPE_CHECKING:  # sentencepiece is the job's: the service layer reads the results without it
    from docllm.tokenizer.encode import SentencePieceTokenizer

#: At most this much text is encoded (~seconds on one core); a larger split is sampled.
DEFAULT_SAMPLE_BYTES = 8 * 2**20


class Coverage(BaseModel):
    """What the measurement saw: the share, and the counts it comes from."""

    coverage: float = Field(ge=0, le=1, description="1 - (unknown + byte-fallback tokens) / tokens")
    tokens: int = Field(ge=0, description="tokens of the sampled text")
    unknown: int = Field(ge=0, description="tokens that are the unknown piece")
    byte_fallback: int = Field(ge=0, description="tokens that are byte pieces")
    records: int = Field(ge=0, description="records sampled")
    sampled_bytes: int = Field(ge=0)
    total_bytes: int = Field(ge=0, description="bytes of text in the split (every record read, not all encoded)")


#: SentencePiece's byte-fallback pieces are named ``<0x00>`` ... ``<0xFF>``.
_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


def byte_piece_ids(tokenizer: SentencePieceTokenizer) -> frozenset[int]:
    """Ids of the byte-fallback pieces (none when the tokenizer was trained without byte fallback)."""
    return frozenset(i for i in range(tokenizer.vocab_size) if _BYTE_PIECE.fullmatch(tokenizer.id_to_piece(i)))


#: The tokenizer job's mode that measures an existing tokenizer first (``docllm.jobs.tokenizer_job``).
REUSE_IF_COVERED: Literal["reuse-if-covered"] = "reuse-if-covered"


class CoverageDecision(BaseModel):
    """``result.json`` of a tokenizer job in :data:`REUSE_IF_COVERED` mode: whether the existing
    tokenizer was kept, the measurement, and why; with the new tokenizer when one was trained."""

    mode: Literal["reuse-if-covered"] = REUSE_IF_COVERED
    reused: bool
    candidate_version: str = Field(description="the existing tokenizer that was measured (the champion's)")
    min_coverage: float
    coverage: Coverage
    reason: str
    trained: TokenizerResult | None = Field(default=None, description="the new tokenizer, when one was trained")


def decide(candidate_version: str, coverage: Coverage, min_coverage: float) -> tuple[bool, str]:
    """Keep the candidate when it covers at least ``min_coverage`` of the new data; the reason in words."""
    share = f"{coverage.coverage:.4f} of {coverage.tokens:,} sampled tokens"
    if coverage.coverage >= min_coverage:
        return True, f"tokenizer {candidate_version} kept: it covers {share} (threshold {min_coverage:g})"
    return False, (
        f"tokenizer {candidate_version} covers only {share} ({coverage.unknown} unknown, "
        f"{coverage.byte_fallback} byte fallback; threshold {min_coverage:g}): a new tokenizer was trained"
    )


def _keep(chunk_id: str, share: float) -> bool:
    """A record's place in the sample depends on its id only: the same data gives the same figure."""
    h = int.from_bytes(hashlib.sha256(chunk_id.encode()).digest()[:8], "big")
    return h / 2**64 < share


def measure_coverage(
    tokenizer: SentencePieceTokenizer,
    records: Iterable[SplitRecord],
    *,
    split_bytes: int | None = None,
    sample_bytes: int = DEFAULT_SAMPLE_BYTES,
    batch: int = 256,
) -> Coverage:
    """The tokenizer's coverage of ``records`` (a split's text).

    ``split_bytes`` (the split file's size, an upper bound of its text) sets the sampling share so
    that about ``sample_bytes`` of text is encoded; None encodes everything. An empty split covers
    fully (there is nothing the tokenizer fails on).
    """
    share = 1.0 if not split_bytes or split_bytes <= sample_bytes else sample_bytes / split_bytes
    is_byte = byte_piece_ids(tokenizer)
    tokens = unknown = byte_fallback = n_records = sampled = total = 0
    pending: list[str] = []

    def flush() -> None:
        nonlocal tokens, unknown, byte_fallback
        for ids in tokenizer.encode_by_line(pending):
            tokens += len(ids)
            unknown += sum(1 for i in ids if i == tokenizer.unk_id)
            byte_fallback += sum(1 for i in ids if i in is_byte)
        pending.clear()

    for record in records:
        size = len(record.text.encode("utf-8"))
        total += size
        if share < 1.0 and not _keep(record.chunk_id, share):
            continue
        n_records += 1
        sampled += size
        pending.append(record.text)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    bad = unknown + byte_fallback
    return Coverage(
        coverage=1.0 if tokens == 0 else 1.0 - bad / tokens,
        tokens=tokens,
        unknown=unknown,
        byte_fallback=byte_fallback,
        records=n_records,
        sampled_bytes=sampled,
        total_bytes=total,
    )
