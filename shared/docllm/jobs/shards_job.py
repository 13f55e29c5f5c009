"""Shards job: a dataset version + a tokenizer version in, packed token shards out.

Channels: ``dataset`` (``manifest.json``, ``<split>.jsonl``) and ``tokenizer``
(``tokenizer.model``, ``card.json``). Hyperparameters: ``output_uri``
(optional: where to publish), ``shard_tokens`` (default 2**24),
``tokenizer_version`` (default: from ``card.json``), and, for a family that
answer-tunes, ``answer_tuning`` (the family's setting as JSON,
:class:`docllm.answers.tuning.AnswerTuning`) with ``block_size`` (the family's
context length).

Answer tuning: examples built from ``train.jsonl`` only
(:func:`docllm.answers.tuning.build_examples`) are encoded and mixed into the
*train* stream at window starts (:mod:`docllm.dataset.mixing`); validation and
test stay pure language-model text, so validation loss compares across runs and
the evaluation's held-out documents stay unseen. Every host builds the same
examples (deterministic) and takes examples ``k, k + n, …``.

Scaling out: a job with several instances gives every host the same channels;
host ``k`` of ``n`` (its position in ``SM_HOSTS``, found by ``SM_CURRENT_HOST``)
encodes documents ``k, k + n, k + 2n, …`` of each split file and writes
``<split>/part-<k>/``, ``counts/part-<k>.json`` and ``parts/part-<k>.json``.
Readers see a split as the concatenation of its parts. With one host the job
also writes ``result.json``; with several, the completion handler merges the
parts (:func:`docllm.dataset.shards_output.finalize_shards_output`).

Local smoke run::

    DOCLLM_SM_PREFIX=/tmp/job SM_CHANNELS='["dataset","tokenizer"]' python -m docllm.jobs.shards_job
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from docllm.answers.tuning import AnswerTuning
from docllm.dataset.mixing import MixStats, mix_examples
from docllm.dataset.shards import write_pieces, write_shards
from docllm.dataset.shards_output import AnswerTuningCounts, ShardsResult, TokenCounts
from docllm.dataset.versions import SPLITS, DatasetManifest, SplitRecord, read_split_file
from docllm.jobs import contract
from docllm.jobs.contract import JobEnvironment, JobInputError, run_job
from docllm.jobs.tokenizer_job import publish_with_result

if TYPE_CHECKING:
    from docllm.tokenizer.encode import SentencePieceTokenizer

DEFAULT_SHARD_TOKENS = 2**24


def host_slice(hosts: list[str], current_host: str) -> tuple[int, int]:
    """``(k, n)``: this host's position among the job's hosts.

    >>> host_slice(["algo-1", "algo-2"], "algo-2")
    (1, 2)
    """
    if current_host not in hosts:
        raise JobInputError(f"current host {current_host!r} is not in hosts {hosts}")
    return sorted(hosts).index(current_host), len(hosts)


def _documents_of_part(records: Iterable[SplitRecord], part: int, parts: int) -> Iterator[SplitRecord]:
    for i, (_, group) in enumerate(itertools.groupby(records, key=lambda r: r.doc_key)):
        if i % parts == part:
            yield from group


def build_shards(
    dataset_dir: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    *,
    shards_uri: str = "",
    tokenizer_version: str | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    part: int = 0,
    parts: int = 1,
    answer_tuning: AnswerTuning | None = None,
    block_size: int | None = None,
) -> tuple[ShardsResult, TokenCounts]:
    """Encode this host's documents of every split into ``out_dir/<split>/part-<k>/``.

    With ``answer_tuning`` (and the model's ``block_size``), the train stream mixes in answer-tuning
    examples (module docstring). Writes ``counts/part-<k>.json`` and ``parts/part-<k>.json`` too;
    returns both.
    """
    if answer_tuning is not None and not block_size:
        raise JobInputError("answer_tuning needs block_size (the model's context length)")
    from docllm.tokenizer.encode import SentencePieceTokenizer, encode_documents

    manifest_path, model_path = dataset_dir / "manifest.json", tokenizer_dir / "tokenizer.model"
    for p in (manifest_path, model_path, *(dataset_dir / f"{s}.jsonl" for s in SPLITS)):
        if not p.exists():
            raise JobInputError(f"input channel lacks {p.name}")
    manifest = DatasetManifest.model_validate_json(manifest_path.read_bytes())
    if tokenizer_version is None:
        card_path = tokenizer_dir / "card.json"
        if not card_path.exists():
            raise JobInputError("tokenizer channel lacks card.json and no tokenizer_version was given")
        tokenizer_version = str(json.loads(card_path.read_text(encoding="utf-8"))["version"])
    tok = SentencePieceTokenizer.from_file(model_path)

    name = f"part-{part:03d}"
    counts = TokenCounts()
    tuning_counts: AnswerTuningCounts | None = None
    tokens: dict[str, int] = {}
    documents: dict[str, int] = {}
    nbytes: dict[str, int] = {}
    started = time.perf_counter()
    for split in SPLITS:
        split_bytes = 0

        def measured(records: Iterable[SplitRecord]) -> Iterator[SplitRecord]:
            nonlocal split_bytes
            for r in records:
                split_bytes += len(r.text.encode("utf-8"))
                yield r

        def stream(split_path: Path) -> Iterator[np.ndarray]:
            records = measured(_documents_of_part(read_split_file(split_path), part, parts))
            for doc in encode_documents(tok, records):
                counts.documents[doc.doc_key] = len(doc.ids)
                for chunk_id, n in doc.chunk_tokens:
                    counts.chunks[chunk_id] = n
                yield doc.ids

        if split == "train" and answer_tuning is not None and block_size:
            mix = MixStats()
            examples = _encoded_examples(
                tok, dataset_dir / "train.jsonl", answer_tuning, block_size, part=part, parts=parts
            )
            index = write_pieces(
                mix_examples(
                    stream(dataset_dir / "train.jsonl"),
                    examples,
                    share=answer_tuning.share,
                    block_size=block_size,
                    eos_id=tok.eos_id,
                    stats=mix,
                ),
                out_dir / split / name,
                vocab_size=tok.vocab_size,
                eos_id=tok.eos_id,
                shard_tokens=shard_tokens,
            )
            tuning_counts = AnswerTuningCounts(
                tag=answer_tuning.tag(block_size),
                built=examples.built,
                **mix.model_dump(exclude={"too_long"}),
                too_long=mix.too_long + examples.unfit,
            )
        else:
            index = write_shards(
                stream(dataset_dir / f"{split}.jsonl"),
                out_dir / split / name,
                vocab_size=tok.vocab_size,
                eos_id=tok.eos_id,
                shard_tokens=shard_tokens,
            )
        tokens[split] = index.total_tokens
        documents[split] = index.documents
        nbytes[split] = split_bytes
        counts.splits[split] = index.total_tokens
    seconds = time.perf_counter() - started
    result = ShardsResult(
        dataset_version=manifest.version,
        tokenizer_version=tokenizer_version,
        shards_uri=shards_uri,
        dtype=index.dtype,
        vocab_size=tok.vocab_size,
        eos_id=tok.eos_id,
        tokens=tokens,
        documents=documents,
        bytes=nbytes,
        encode_seconds=round(seconds, 3),
        answer_tuning=tuning_counts,
    )
    (out_dir / "counts").mkdir(parents=True, exist_ok=True)
    (out_dir / "counts" / f"{name}.json").write_text(counts.model_dump_json(), encoding="utf-8")
    (out_dir / "parts").mkdir(parents=True, exist_ok=True)
    (out_dir / "parts" / f"{name}.json").write_text(result.model_dump_json(indent=1), encoding="utf-8")
    return result, counts


class _Examples:
    """This host's answer-tuning examples as token ids, in the builder's (hash) order; ``built``:
    how many the builder made for every host together."""

    def __init__(self, ids: list[np.ndarray], built: int, *, unfit: int = 0) -> None:
        self.ids, self.built, self.unfit = ids, built, unfit

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.ids)


#: Shares of the prompt budget tried in turn for an example whose tokens overflow the context.
PROMPT_SHARES = (1.0, 0.7, 0.5, 0.35)


def _encoded_examples(
    tok: SentencePieceTokenizer, train_path: Path, settings: AnswerTuning, block_size: int, *, part: int, parts: int
) -> _Examples:
    """Every host builds the same examples and keeps its slice. The prompt budget is an estimate
    (:data:`docllm.answers.prompt.BYTES_PER_TOKEN`); an example whose tokens do not fit one window is
    built again at the next of :data:`PROMPT_SHARES` (a shorter cut of its context)."""
    from docllm.answers.tuning import build_examples

    fitted: dict[tuple[str, str], np.ndarray] = {}  # int32: a fifth of the memory of Python ints
    order: dict[tuple[str, str], None] = {}  # first-seen order (the first build's rank order)
    for share in PROMPT_SHARES:
        examples = build_examples(
            lambda: read_split_file(train_path), settings, context_length=block_size, prompt_share=share
        )
        todo = [e for e in examples if (e.chunk_id, e.question) not in fitted]
        for e, ids in zip(todo, tok.encode([e.text for e in todo]), strict=True):
            key = (e.chunk_id, e.question)
            order.setdefault(key)
            if len(ids) + 1 <= block_size:
                fitted[key] = np.asarray(ids, dtype=np.int32)
        if len(fitted) == len(order):
            break
    mine = [fitted[k] for k in order if k in fitted][part::parts]
    return _Examples(mine, len(fitted), unfit=len(order) - len(fitted))


def _answer_tuning(env: JobEnvironment) -> tuple[AnswerTuning | None, int | None]:
    raw = env.hyperparameters.get("answer_tuning")
    if not raw:
        return None, None
    try:
        settings = AnswerTuning.model_validate_json(raw)
        block_size = int(env.hp("block_size", "0"))
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise JobInputError(f"answer_tuning/block_size: {e}") from e
    if block_size < 8:
        raise JobInputError(f"answer_tuning needs block_size >= 8, got {block_size}")
    return settings, block_size


def main(env: JobEnvironment) -> None:
    for channel in ("dataset", "tokenizer"):
        if channel not in env.channels:
            raise JobInputError(f"missing channel {channel!r}")
    try:
        shard_tokens = int(env.hp("shard_tokens", str(DEFAULT_SHARD_TOKENS)))
    except ValueError as e:
        raise JobInputError(f"shard_tokens must be an integer: {e}") from e
    if shard_tokens <= 0:
        raise JobInputError(f"shard_tokens must be positive, got {shard_tokens}")
    part, parts = host_slice(env.hosts, env.current_host)
    output_uri = env.hyperparameters.get("output_uri")
    answer_tuning, block_size = _answer_tuning(env)
    result, _ = build_shards(
        env.channels["dataset"],
        env.channels["tokenizer"],
        env.model_dir,
        shards_uri=output_uri or "",
        tokenizer_version=env.hyperparameters.get("tokenizer_version"),
        shard_tokens=shard_tokens,
        part=part,
        parts=parts,
        answer_tuning=answer_tuning,
        block_size=block_size,
    )
    if parts == 1:
        publish_with_result(env.model_dir, result.model_dump_json(indent=1), output_uri)
    elif output_uri:
        contract.publish_directory(env.model_dir, output_uri)


if __name__ == "__main__":
    run_job(main)
