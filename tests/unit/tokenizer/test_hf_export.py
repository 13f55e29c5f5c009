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
