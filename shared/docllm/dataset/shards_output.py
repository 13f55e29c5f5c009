"""The output of a shards job: its layout, token counts and result.

Layout under :func:`shards_prefix` (``s3://<artifact_bucket>/shards/<dataset>/<tokenizer>/``, or
``…/<tokenizer>/<answer-tuning tag>/`` for shards that mix in answer-tuning examples)::

    <split>/part-NNN/shard-*.bin, index.json   one part per job host
    counts/part-NNN.json                       :class:`TokenCounts` of that host's documents
    parts/part-NNN.json                        :class:`ShardsResult` of that host
    result.json                                merged :class:`ShardsResult`, published last

A one-host job writes ``result.json`` itself. With several hosts no host knows
when the others are done, so the completion handler (which runs once, after
every host finished) calls :func:`finalize_shards_output` to merge the parts.
The shard format itself is :mod:`docllm.dataset.shards`.

Example::

    counts = load_token_counts(objects, "s3://art/shards/ds-1/tok-1/")
    counts.documents["s3/UsingBucket.md"]
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from docllm.dataset.exceptions import DatasetNotFoundError
from docllm.exceptions import NotFoundError
from docllm.ports.objects import ObjectStore, split_uri
from docllm.retries import retry_transient


def shards_prefix(artifact_bucket: str, dataset_version: str, tokenizer_version: str, variant: str = "") -> str:
    """Where the shards of a dataset version encoded with a tokenizer version are published;
    ``variant`` (an answer-tuning tag, :meth:`docllm.answers.tuning.AnswerTuning.tag`) names shards
    whose train stream differs, below the plain ones.

    >>> shards_prefix("art", "ds-1", "tok-1"), shards_prefix("art", "ds-1", "tok-1", "at-0123")
    ('s3://art/shards/ds-1/tok-1/', 's3://art/shards/ds-1/tok-1/at-0123/')
    """
    base = f"s3://{artifact_bucket}/shards/{dataset_version}/{tokenizer_version}/"
    return f"{base}{variant}/" if variant else base


class TokenCounts(BaseModel):
    """Exact token counts (EOS not included in documents and chunks; included in splits)."""

    documents: dict[str, int] = Field(default_factory=dict, description="doc_key -> tokens")
    chunks: dict[str, int] = Field(default_factory=dict, description="chunk_id -> tokens")
    splits: dict[str, int] = Field(default_factory=dict, description="split -> tokens in its stream")

    def merge(self, other: TokenCounts) -> TokenCounts:
        splits = dict(self.splits)
        for k, v in other.splits.items():
            splits[k] = splits.get(k, 0) + v
        return TokenCounts(
            documents={**self.documents, **other.documents},
            chunks={**self.chunks, **other.chunks},
            splits=splits,
        )


class AnswerTuningCounts(BaseModel):
    """What answer tuning put in the train stream (:class:`docllm.dataset.mixing.MixStats`, per host,
    summed on merge; ``built`` is every host's together, the same on each)."""

    tag: str = Field(description="the settings' tag, AnswerTuning.tag(block_size)")
    built: int = Field(default=0, ge=0, description="examples the builder made")
    examples: int = Field(default=0, ge=0, description="examples placed in the stream")
    example_tokens: int = 0
    lm_tokens: int = 0
    padding_tokens: int = 0
    too_long: int = Field(default=0, description="examples longer than a window once encoded (dropped)")
    unplaced: int = Field(default=0, description="examples left out to keep the share")

    def merge(self, other: AnswerTuningCounts) -> AnswerTuningCounts:
        summed = {
            k: getattr(self, k) + getattr(other, k)
            for k in ("examples", "example_tokens", "lm_tokens", "padding_tokens", "too_long", "unplaced")
        }
        return self.model_copy(update=summed)


class ShardsResult(BaseModel):
    """``result.json`` of a shards job (or one host's ``parts/part-NNN.json``)."""

    dataset_version: str
    tokenizer_version: str
    shards_uri: str
    dtype: str
    vocab_size: int
    eos_id: int
    tokens: dict[str, int] = Field(description="split -> tokens (EOS included)")
    documents: dict[str, int] = Field(description="split -> documents")
    bytes: dict[str, int] = Field(default_factory=dict, description="split -> UTF-8 bytes of text encoded")
    parts: int = Field(default=1, ge=1, description="hosts whose parts were merged")
    encode_seconds: float = 0.0
    answer_tuning: AnswerTuningCounts | None = Field(
        default=None, description="set when the train stream mixes in answer-tuning examples"
    )


def merge_results(parts: list[ShardsResult]) -> ShardsResult:
    if not parts:
        raise DatasetNotFoundError("no shards part results to merge")
    first = parts[0]

    def add(field: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in parts:
            for k, v in getattr(p, field).items():
                out[k] = out.get(k, 0) + v
        return out

    return first.model_copy(
        update={
            "tokens": add("tokens"),
            "documents": add("documents"),
            "bytes": add("bytes"),
            "parts": len(parts),
            "encode_seconds": max(p.encode_seconds for p in parts),
            "answer_tuning": _merge_tuning([p.answer_tuning for p in parts if p.answer_tuning is not None]),
        }
    )


def _merge_tuning(counts: list[AnswerTuningCounts]) -> AnswerTuningCounts | None:
    if not counts:
        return None
    out = counts[0]
    for c in counts[1:]:
        out = out.merge(c)
    return out


def _prefix(uri: str) -> tuple[str, str]:
    bucket, key = split_uri(uri)
    return bucket, key if not key or key.endswith("/") else key + "/"


def load_token_counts(objects: ObjectStore, shards_uri: str) -> TokenCounts:
    """Merged token counts of every host part of a shards job's output."""
    bucket, prefix = _prefix(shards_uri)
    counts = TokenCounts()
    found = False
    for info in objects.list(bucket, prefix + "counts/"):
        counts = counts.merge(TokenCounts.model_validate_json(retry_transient(objects.get, bucket, info.key)))
        found = True
    if not found:
        raise DatasetNotFoundError(f"no token counts under {shards_uri}")
    return counts


def finalize_shards_output(objects: ObjectStore, shards_uri: str, *, expected_parts: int) -> ShardsResult:
    """Merge the hosts' part results into ``result.json`` (idempotent; no-op if it exists).

    Raises
    ------
    DatasetNotFoundError
        When fewer than ``expected_parts`` part results are present.
    """
    bucket, prefix = _prefix(shards_uri)
    try:
        return ShardsResult.model_validate_json(retry_transient(lambda: objects.get(bucket, prefix + "result.json")))
    except NotFoundError:
        pass
    parts = [
        ShardsResult.model_validate_json(retry_transient(objects.get, bucket, info.key))
        for info in objects.list(bucket, prefix + "parts/")
    ]
    if len(parts) < expected_parts:
        raise DatasetNotFoundError(f"{len(parts)} of {expected_parts} part results under {shards_uri}")
    result = merge_results(parts)
    objects.put(
        bucket,
        prefix + "result.json",
        result.model_dump_json(indent=1).encode(),
        content_type="application/json",
    )
    return result
