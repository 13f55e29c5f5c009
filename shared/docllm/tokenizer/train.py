"""Train a lossless SentencePiece tokenizer from a dataset's train split.

Two steps, both streaming:

1. :func:`write_training_text` samples chunks (a salted hash of the chunk id
   against ``sample_bytes / split size``, so the sample is deterministic and
   bounded) and writes one line per text line, cutting lines longer than
   SentencePiece's ``max_sentence_length`` at whitespace instead of letting the
   trainer drop them.
2. :func:`train_sentencepiece` runs the trainer with :func:`trainer_options`:
   identity normalisation, no whitespace collapsing, no dummy prefix, byte
   fallback, whitespace-only pieces (code indentation), digits split, and
   newline/tab as user-defined symbols, so ``decode(encode(text)) == text``.

:func:`train_from_records` (what the job runs) does both at once: the sample
streams into the trainer through a FIFO while it is being written.

Example::

    stats, model_bytes = train_from_records(read_split_file(Path("train.jsonl")), settings,
                                            Path("/tmp/work"), split_bytes=Path("train.jsonl").stat().st_size)
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from docllm.dataset.versions import SplitRecord
from docllm.tokenizer.exceptions import TokenizerTrainingError
from docllm.tokenizer.settings import (
    BOS_ID,
    BOS_PIECE,
    EOS_ID,
    EOS_PIECE,
    PAD_ID,
    PAD_PIECE,
    UNK_ID,
    UNK_PIECE,
    WHITESPACE_SYMBOLS,
    TokenizerSettings,
)


class SampleStats(BaseModel):
    chunks_total: int = 0
    chunks_kept: int = 0
    lines: int = 0
    bytes: int = 0
    long_lines_cut: int = 0


def _keep(chunk_id: str, seed: int, ratio: float) -> bool:
    if ratio >= 1.0:
        return True
    h = hashlib.blake2b(f"{seed}\x00{chunk_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") < ratio * 2**64


def cut_long_line(line: str, max_bytes: int) -> list[str]:
    """Cut ``line`` into pieces of at most ``max_bytes`` UTF-8 bytes, preferably before a space.

    The space stays at the start of the next piece, where SentencePiece expects it.

    >>> cut_long_line("aaaa bbbb cccc", 10)
    ['aaaa bbbb', ' cccc']
    """
    data = line.encode("utf-8")
    if len(data) <= max_bytes:
        return [line]
    pieces: list[str] = []
    while len(data) > max_bytes:
        cut = data.rfind(b" ", 1, max_bytes + 1)
        if cut <= 0:
            cut = max_bytes
            while cut > 0 and (data[cut] & 0xC0) == 0x80:  # not inside a UTF-8 sequence
                cut -= 1
        pieces.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    if data:
        pieces.append(data.decode("utf-8"))
    return pieces


def write_training_text(
    records: Iterable[SplitRecord], out_path: Path, settings: TokenizerSettings, *, split_bytes: int
) -> SampleStats:
    """Write the trainer's input file: sampled chunk text, one line per line, long lines cut.

    Parameters
    ----------
    records
        The train split's records.
    split_bytes
        Size of the split (its file size is a fine upper bound): with ``sample_bytes``
        it sets the share of chunks kept.
    """
    ratio = min(1.0, settings.sample_bytes / max(1, split_bytes))
    stats = SampleStats()
    limit = settings.max_sentence_length
    # A line of at most limit // 4 characters cannot exceed limit UTF-8 bytes: only
    # longer ones are measured. One encode and one write per chunk keeps this at
    # disk speed (it was a third of the job's fixed cost).
    short = limit // 4
    with out_path.open("wb") as fh:
        for rec in records:
            stats.chunks_total += 1
            if not _keep(rec.chunk_id, settings.seed, ratio):
                continue
            stats.chunks_kept += 1
            kept: list[str] = []
            for line in rec.text.split("\n"):
                if not line or line.isspace():
                    continue  # newline is a symbol; blank lines teach the trainer nothing
                if len(line) <= short:
                    kept.append(line)
                    continue
                pieces = cut_long_line(line, limit)
                stats.long_lines_cut += len(pieces) > 1
                kept.extend(pieces)
            if kept:
                data = ("\n".join(kept) + "\n").encode("utf-8")
                fh.write(data)
                stats.lines += len(kept)
                stats.bytes += len(data)
    return stats


def trainer_options(settings: TokenizerSettings, *, num_threads: int | None = None) -> dict[str, Any]:
    """SentencePiece trainer keyword arguments for ``settings`` (also used by the benchmark)."""
    threads = num_threads or settings.num_threads or os.cpu_count() or 1
    return {
        "model_type": settings.model_type,
        "vocab_size": settings.effective_vocab_size,
        "character_coverage": settings.character_coverage,
        "byte_fallback": True,
        # Lossless: no NFKC, keep every space, no invented leading space.
        "normalization_rule_name": "identity",
        "remove_extra_whitespaces": False,
        "add_dummy_prefix": False,
        "allow_whitespace_only_pieces": True,
        "split_digits": settings.split_digits,
        "user_defined_symbols": [*WHITESPACE_SYMBOLS, *settings.extra_symbols],
        "unk_id": UNK_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "pad_id": PAD_ID,
        "unk_piece": UNK_PIECE,
        "bos_piece": BOS_PIECE,
        "eos_piece": EOS_PIECE,
        "pad_piece": PAD_PIECE,
        "max_sentence_length": settings.max_sentence_length,
        # Sampling is ours (bounded, deterministic); the trainer takes the whole file.
        "input_sentence_size": 0,
        "shuffle_input_sentence": False,
        "num_threads": threads,
        "minloglevel": 2,
    }


# SentencePiece records its input paths in the model; a fixed name keeps the bytes
# (and so ``model_sha256``) the same for the same data and settings.
RECORDED_INPUT = "train-split-sample.txt"


def _run_trainer(input_path: Path, settings: TokenizerSettings) -> bytes:
    import sentencepiece as spm

    from docllm.tokenizer.hf_export import load_model_proto

    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(input=str(input_path), model_writer=writer, **trainer_options(settings))
    except RuntimeError as e:
        raise TokenizerTrainingError(f"SentencePiece training failed: {e}") from e
    proto = load_model_proto(writer.getvalue())
    del proto.trainer_spec.input[:]
    proto.trainer_spec.input.append(RECORDED_INPUT)
    return bytes(proto.SerializeToString())


def train_sentencepiece(input_path: Path, settings: TokenizerSettings) -> bytes:
    """Train on a text file and return the serialized ``tokenizer.model``.

    Raises
    ------
    TokenizerTrainingError
        SentencePiece rejected the input or settings (its message is kept).
    """
    if input_path.stat().st_size == 0:
        raise TokenizerTrainingError(NO_TEXT)
    return _run_trainer(input_path, settings)


NO_TEXT = "no training text: the train split is empty after sampling"


def train_from_records(
    records: Iterable[SplitRecord], settings: TokenizerSettings, work_dir: Path, *, split_bytes: int
) -> tuple[SampleStats, bytes]:
    """Sample ``records`` and train on the sample, the two overlapped; return stats and model bytes.

    SentencePiece releases the GIL and reads its input once, front to back, so
    the sample is written into a FIFO that the trainer reads while it is being
    written: sampling costs no wall time beyond the trainer's own reading (the
    job's budget is 1.15x SentencePiece alone). Where FIFOs do not exist the
    sample goes through a file first.

    Raises
    ------
    TokenizerTrainingError
        SentencePiece rejected the input or settings, or the sample was empty.
    ChunksUnreadableError
        A line of the split is not a record (raised by the reader).
    """
    if not hasattr(os, "mkfifo"):
        path = work_dir / "sample.txt"
        sampled = write_training_text(records, path, settings, split_bytes=split_bytes)
        return sampled, train_sentencepiece(path, settings)
    fifo = work_dir / "sample.fifo"
    os.mkfifo(fifo)
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            outcome["stats"] = write_training_text(records, fifo, settings, split_bytes=split_bytes)
        except BrokenPipeError:
            pass  # the trainer stopped reading: its own error is the one to report
        except BaseException as e:  # re-raised in the caller's thread
            outcome["error"] = e

    writer = threading.Thread(target=write, name="tokenizer-sample-writer", daemon=True)
    writer.start()
    try:
        model = _run_trainer(fifo, settings)
    except TokenizerTrainingError:
        _drain_until_done(fifo, writer)
        if "error" in outcome:
            raise outcome["error"] from None
        if "stats" in outcome and outcome["stats"].bytes == 0:
            raise TokenizerTrainingError(NO_TEXT) from None
        raise
    writer.join()
    if "error" in outcome:
        raise outcome["error"]
    stats: SampleStats = outcome["stats"]
    if stats.bytes == 0:
        raise TokenizerTrainingError(NO_TEXT)
    return stats, model


def _drain_until_done(fifo: Path, writer: threading.Thread) -> None:
    """Read and discard the FIFO until the writer ends.

    The trainer may fail before it ever opens its input (bad settings); the writer
    would then wait in ``open`` for a reader forever. A non-blocking read end
    lets it through whether it has reached ``open`` yet or not.
    """
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while writer.is_alive():
            try:
                if os.read(fd, 1 << 16):
                    continue
            except BlockingIOError:
                pass
            writer.join(0.01)
    finally:
        os.close(fd)
