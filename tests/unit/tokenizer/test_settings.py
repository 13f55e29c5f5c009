from __future__ import annotations

import pytest

from docllm.dataset.versions import DatasetDocument, DatasetManifest, DatasetStats
from docllm.tokenizer.exceptions import TokenizerSettingsError
from docllm.tokenizer.settings import TokenizerSettings, tokenizer_prefix, tokenizer_version


def _manifest(extra: list[DatasetDocument] | None = None) -> DatasetManifest:
    docs = [
        DatasetDocument(doc_key="a", sha256="1" * 64, service="s3", split="train", chunk_ids=["a0"], token_estimate=1),
        DatasetDocument(doc_key="b", sha256="2" * 64, service="s3", split="test", chunk_ids=["b0"], token_estimate=1),
    ]
    return DatasetManifest(
        version="ds-1", created_at="", services=[], documents=docs + (extra or []), stats=DatasetStats()
    )


def test_vocabulary_is_padded_to_the_multiple() -> None:
    assert TokenizerSettings().effective_vocab_size == 32000
    assert TokenizerSettings(vocab_size=32001).effective_vocab_size == 32064
    assert TokenizerSettings(vocab_size=1000, pad_to_multiple=128).effective_vocab_size == 1024


def test_settings_survive_the_hyperparameter_round_trip() -> None:
    s = TokenizerSettings(model_type="unigram", vocab_size=8000, extra_symbols=["<|code|>"], split_digits=False)
    hp = s.to_hyperparameters()
    assert all(isinstance(v, str) for v in hp.values())
    assert TokenizerSettings.from_hyperparameters({**hp, "output_uri": "s3://x/"}) == s


@pytest.mark.parametrize(("field", "value"), [("vocab_size", "-5"), ("model_type", "wordpiece"), ("vocab_size", "x")])
def test_bad_hyperparameter_is_named_in_the_error(field: str, value: str) -> None:
    with pytest.raises(TokenizerSettingsError, match=field):
        TokenizerSettings.from_hyperparameters({field: value})


def test_version_changes_with_train_documents_and_settings_only() -> None:
    base = tokenizer_version(TokenizerSettings(), _manifest())
    held_out = DatasetDocument(
        doc_key="c", sha256="3" * 64, service="s3", split="validation", chunk_ids=["c0"], token_estimate=1
    )
    trained = held_out.model_copy(update={"split": "train"})
    assert tokenizer_version(TokenizerSettings(), _manifest([held_out])) == base
    assert tokenizer_version(TokenizerSettings(num_threads=7), _manifest()) == base
    assert tokenizer_version(TokenizerSettings(), _manifest([trained])) != base
    assert tokenizer_version(TokenizerSettings(vocab_size=16000), _manifest()) != base


def test_tokenizers_are_published_under_their_version() -> None:
    version = tokenizer_version(TokenizerSettings(), _manifest())
    assert tokenizer_prefix("art", version) == f"s3://art/tokenizers/{version}/"
