from __future__ import annotations

from pathlib import Path

import pytest

from docllm.dataset.versions import SplitRecord
from docllm.tokenizer.settings import TokenizerSettings
from docllm.tokenizer.train import train_sentencepiece, write_training_text
from tests.unit.tokenizer.corpus import texts


def train_small(tmp: Path, model_type: str = "bpe", vocab_size: int = 384) -> Path:
    return train_on_texts(tmp, texts(), model_type=model_type, vocab_size=vocab_size)


def train_on_texts(tmp: Path, corpus: list[str], *, model_type: str = "bpe", vocab_size: int = 384) -> Path:
    """Train a SentencePiece model with our settings on ``corpus``; return its ``tokenizer.model``."""
    settings = TokenizerSettings(model_type=model_type, vocab_size=vocab_size, num_threads=1)
    records = [SplitRecord(chunk_id=f"c{i}", doc_key=f"d{i}", text=t) for i, t in enumerate(corpus)]
    write_training_text(records, tmp / "sample.txt", settings, split_bytes=10**9)
    path = tmp / "tokenizer.model"
    path.write_bytes(train_sentencepiece(tmp / "sample.txt", settings))
    return path


@pytest.fixture(scope="session")
def bpe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_small(tmp_path_factory.mktemp("bpe"))


@pytest.fixture(scope="session")
def unigram_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_small(tmp_path_factory.mktemp("unigram"), "unigram")
