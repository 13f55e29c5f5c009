from __future__ import annotations

import json
from pathlib import Path

import pytest

from docllm.tokenizer.encode import SentencePieceTokenizer
from docllm.tokenizer.hf_export import export_hf
from tests.unit.tokenizer.corpus import SPECIAL, texts

SAMPLES = [*texts(40, seed=3), *SPECIAL, "\tx\n\n  y", "   ", "🚀" * 3, "plain"]


@pytest.mark.parametrize("fixture", ["bpe_model", "unigram_model"])
def test_auto_tokenizer_gives_sentencepiece_ids_and_decodes_losslessly(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    model: Path = request.getfixturevalue(fixture)
    export_hf(model, tmp_path)
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    sp = SentencePieceTokenizer.from_file(model)
    for text, ids in zip(SAMPLES, sp.encode(SAMPLES), strict=True):
        assert hf.encode(text, add_special_tokens=False) == ids
        assert hf.decode(ids) == text


def test_exported_config_is_portable_and_names_special_tokens(bpe_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    files = {p.name for p in export_hf(bpe_model, tmp_path)}
    assert {"tokenizer.json", "tokenizer_config.json"} <= files
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    ids = (hf.unk_token_id, hf.bos_token_id, hf.eos_token_id, hf.pad_token_id)
    assert ids == (0, 1, 2, 3)
    assert len(hf) == SentencePieceTokenizer.from_file(bpe_model).vocab_size
    # No BOS added on encode: the shards carry none either.
    assert hf.encode("plain")[0] != hf.bos_token_id


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_auto_tokenizer_matches_sentencepiece_on_real_aws_guides(
    model_type: str, corpus_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from tests.unit.tokenizer.conftest import train_on_texts

    files = sorted((corpus_dir / "awsdocs").glob("*/doc_source/*.md"))[::20]
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    train, held_out = texts[::2], texts[1::2]
    model = train_on_texts(tmp_path, train, model_type=model_type, vocab_size=1024)
    export_hf(model, tmp_path / "hf")
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    sp = SentencePieceTokenizer.from_file(model)
    expected = sp.encode(held_out)
    got = hf(held_out, add_special_tokens=False)["input_ids"]
    assert sum(len(ids) for ids in got) > 10_000  # a real sample, not a handful of tokens
    mismatched = [files[1::2][i].name for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
    assert mismatched == []
    assert [hf.decode(ids) for ids in got] == held_out
