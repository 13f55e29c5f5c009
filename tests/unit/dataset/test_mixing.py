"""Mixing answer-tuning examples into the train stream: window-aligned, whole, at the share, LM text intact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from docllm.dataset.mixing import MixStats, mix_examples
from docllm.dataset.shards import PackedSequenceReader, StreamPiece, write_pieces

EOS = 2
BLOCK = 16


def _lm(n: int = 40, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(100, 200, size=int(rng.integers(1, 30))) for _ in range(n)]


def _examples(n: int = 30, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(300, 400, size=int(rng.integers(3, BLOCK))) for _ in range(n)]


def _flat(pieces: list[StreamPiece]) -> np.ndarray:
    return np.concatenate([np.append(p.ids, EOS) if p.ends else np.asarray(p.ids) for p in pieces])


def test_examples_start_at_window_starts_and_lie_whole_in_one_window() -> None:
    examples = _examples()
    pieces = list(mix_examples(_lm(), examples, share=0.3, block_size=BLOCK, eos_id=EOS, stats=MixStats()))
    stream = _flat(pieces)
    placed = 0
    pos = 0
    for p in pieces:
        if len(p.ids) and int(np.asarray(p.ids)[0]) >= 300:  # an example
            assert pos % BLOCK == 0
            assert len(p.ids) + 1 <= BLOCK
            assert np.array_equal(stream[pos : pos + len(p.ids)], examples[placed])
            placed += 1
        pos += len(p.ids) + p.ends
    assert placed > 0 and len(stream) % BLOCK == 0


def test_language_model_text_is_kept_whole_and_in_order() -> None:
    lm = _lm()
    pieces = list(mix_examples(lm, _examples(), share=0.3, block_size=BLOCK, eos_id=EOS, stats=MixStats()))
    lm_only = [p for p in pieces if not (len(p.ids) and int(np.asarray(p.ids)[0]) >= 300)]
    # Without the examples and the final padding, the stream is the documents, each once, each with its EOS.
    stream = _flat(lm_only)
    expected = np.concatenate([np.append(d, EOS) for d in lm])
    assert np.array_equal(stream[: len(expected)], expected)
    assert set(stream[len(expected) :].tolist()) <= {EOS}


def test_examples_hold_their_share_and_the_rest_is_left_out() -> None:
    stats = MixStats()
    list(mix_examples(_lm(), _examples(200), share=0.25, block_size=BLOCK, eos_id=EOS, stats=stats))
    share = stats.example_tokens / (stats.example_tokens + stats.lm_tokens)
    assert 0.15 <= share <= 0.26
    assert stats.unplaced > 0 and stats.examples + stats.unplaced + stats.too_long == 200


def test_an_example_longer_than_a_window_is_dropped() -> None:
    stats = MixStats()
    too_long = [np.full(BLOCK, 300)]
    list(mix_examples(_lm(), too_long, share=0.2, block_size=BLOCK, eos_id=EOS, stats=stats))
    assert (stats.too_long, stats.examples) == (1, 0)


def test_mixed_stream_reads_back_as_packed_windows(tmp_path: Path) -> None:
    stats = MixStats()
    pieces = mix_examples(_lm(), _examples(), share=0.3, block_size=BLOCK, eos_id=EOS, stats=stats)
    index = write_pieces(pieces, tmp_path, vocab_size=512, eos_id=EOS, shard_tokens=37)
    assert index.total_tokens == stats.lm_tokens + stats.example_tokens + stats.padding_tokens
    assert index.documents == 40 + stats.examples  # a document cut around an example is still one
    reader = PackedSequenceReader(tmp_path, block_size=BLOCK, shuffle=False)
    starts_with_example = sum(int(reader.window(i)[0]) >= 300 for i in range(len(reader)))
    assert starts_with_example == stats.examples
