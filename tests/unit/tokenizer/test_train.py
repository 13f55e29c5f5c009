from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docllm.dataset.versions import SplitRecord
from docllm.tokenizer.encode import SentencePieceTokenizer
from docllm.tokenizer.exceptions import TokenizerTrainingError
from docllm.tokenizer.settings import TokenizerSettings
from docllm.tokenizer.train import cut_long_line, train_from_records, train_sentencepiece, write_training_text
from tests.unit.tokenizer.corpus import SPECIAL, texts


@given(st.text(min_size=0, max_size=400), st.integers(min_value=4, max_value=64))
def test_cut_long_line_keeps_every_character_and_respects_limit(line: str, limit: int) -> None:
    pieces = cut_long_line(line, limit)
    assert "".join(pieces) == line
    assert all(len(p.encode()) <= limit for p in pieces if len(pieces) > 1)


@pytest.mark.parametrize("fixture", ["bpe_model", "unigram_model"])
def test_decode_of_encode_is_byte_identical(fixture: str, request: pytest.FixtureRequest) -> None:
    tok = SentencePieceTokenizer.from_file(request.getfixturevalue(fixture))
    unseen = ["\tmixed \t tabs\n    and    spaces\n", "   ", "\n", "x" * 5000, "ÿ\u200b\u00a0nbsp"]
    samples = texts(30, seed=9) + SPECIAL + unseen
    for text, ids in zip(samples, tok.encode(samples), strict=True):
        assert tok.decode(ids) == text


def test_special_tokens_have_llama_ids_and_whitespace_is_a_single_token(bpe_model: Path) -> None:
    tok = SentencePieceTokenizer.from_file(bpe_model)
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, 3)
    nl, tab = tok.encode(["\n", "\t"])
    assert len(nl) == 1 and len(tab) == 1
    assert tok.vocab_size == 384


def test_long_lines_are_cut_not_dropped(tmp_path: Path) -> None:
    settings = TokenizerSettings(max_sentence_length=256)
    long = " ".join(["word"] * 400)
    stats = write_training_text(
        [SplitRecord(chunk_id="c", doc_key="d", text=long)], tmp_path / "s.txt", settings, split_bytes=1
    )
    lines = (tmp_path / "s.txt").read_text(encoding="utf-8").splitlines()
    assert stats.long_lines_cut == 1
    assert "".join(lines) == long
    assert all(len(line.encode()) <= 256 for line in lines)


def test_sampling_bounds_training_text_and_is_deterministic(tmp_path: Path) -> None:
    records = [SplitRecord(chunk_id=f"c{i}", doc_key="d", text=f"text number {i} " * 20) for i in range(400)]
    total = sum(len(r.text) for r in records)
    settings = TokenizerSettings(sample_bytes=total // 4)
    a = write_training_text(records, tmp_path / "a.txt", settings, split_bytes=total)
    b = write_training_text(records, tmp_path / "b.txt", settings, split_bytes=total)
    assert a == b and (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    assert 0.15 * total < a.bytes < 0.35 * total


def test_vocabulary_too_small_for_the_alphabet_is_a_typed_error(tmp_path: Path) -> None:
    settings = TokenizerSettings(vocab_size=320, character_coverage=1.0, model_type="unigram")
    text = "".join(chr(0x4E00 + i) for i in range(600))
    (tmp_path / "s.txt").write_text(text + "\n", encoding="utf-8")
    with pytest.raises(TokenizerTrainingError):
        train_sentencepiece(tmp_path / "s.txt", settings)


def test_empty_training_text_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("", encoding="utf-8")
    with pytest.raises(TokenizerTrainingError):
        train_sentencepiece(tmp_path / "s.txt", TokenizerSettings())


def _records(corpus: list[str]) -> list[SplitRecord]:
    return [SplitRecord(chunk_id=f"c{i}", doc_key=f"d{i}", text=t) for i, t in enumerate(corpus)]


def test_streamed_training_gives_the_same_model_bytes_as_training_from_a_file(tmp_path: Path) -> None:
    settings = TokenizerSettings(vocab_size=384, num_threads=1)
    records = _records(texts())
    file_stats = write_training_text(records, tmp_path / "sample.txt", settings, split_bytes=10**9)
    from_file = train_sentencepiece(tmp_path / "sample.txt", settings)
    (tmp_path / "work").mkdir()
    stats, streamed = train_from_records(records, settings, tmp_path / "work", split_bytes=10**9)
    assert stats == file_stats
    # Byte-identical, so model_sha256 names the data and settings, not a temp path.
    assert streamed == from_file


def test_settings_the_trainer_rejects_before_reading_fail_without_hanging(tmp_path: Path) -> None:
    settings = TokenizerSettings(vocab_size=384, extra_symbols=["\n"])  # newline is already a symbol
    with pytest.raises(TokenizerTrainingError, match="duplicated"):
        train_from_records(_records(texts()), settings, tmp_path, split_bytes=10**9)


def test_an_unreadable_record_mid_stream_is_raised_not_trained_around(tmp_path: Path) -> None:
    class BrokenSplit(Exception):
        pass

    def records() -> Iterator[SplitRecord]:
        yield from _records(texts())
        raise BrokenSplit("train.jsonl:41: not a split record")

    with pytest.raises(BrokenSplit):
        train_from_records(records(), TokenizerSettings(vocab_size=384), tmp_path, split_bytes=10**9)


def test_streamed_training_on_an_empty_split_says_so(tmp_path: Path) -> None:
    blank = _records(["   \n\n", "\t\n"])
    with pytest.raises(TokenizerTrainingError, match="no training text"):
        train_from_records(blank, TokenizerSettings(), tmp_path, split_bytes=10**9)
