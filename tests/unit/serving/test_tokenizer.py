from __future__ import annotations

from pathlib import Path

import pytest

from docllm.serving.tokenizer import REPLACEMENT, HFTextTokenizer, IncrementalDecoder, TextTokenizer, load_tokenizer

TEXT = "Café naïve 🚀 résumé — versioning 💾 on a bucket"


@pytest.fixture(scope="module")
def sp(tiny_export: Path) -> TextTokenizer:
    return load_tokenizer(tiny_export)


def test_streamed_deltas_join_to_the_decoded_text_and_never_split_a_character(sp: TextTokenizer) -> None:
    prompt = sp.encode("Amazon S3")
    ids = sp.encode(TEXT)
    assert len(ids) > len(TEXT.split())  # the emoji are byte pieces: several ids per character
    dec = IncrementalDecoder(sp, prompt)
    deltas = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(deltas) == TEXT
    assert not any(REPLACEMENT in d for d in deltas)
    assert "" in deltas  # the first bytes of an emoji were held back


def test_an_unfinished_character_is_flushed_as_a_replacement(sp: TextTokenizer) -> None:
    ids = sp.encode("🚀")
    dec = IncrementalDecoder(sp, [])
    assert [dec.push(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert dec.flush() == sp.decode(ids[:-1])


def test_prompts_get_no_bos_unless_the_config_asks_and_an_empty_prompt_starts_at_a_boundary(sp: TextTokenizer) -> None:
    assert sp.encode_prompt("Amazon") == sp.encode("Amazon")
    assert sp.encode_prompt("") == [sp.bos_id]


def test_the_tokenizer_json_backend_encodes_and_decodes_as_sentencepiece(tiny_export: Path, tmp_path: Path) -> None:
    from docllm.tokenizer.hf_export import export_hf

    export_hf(tiny_export / "tokenizer.model", tmp_path)
    assert not (tmp_path / "tokenizer.model").exists()
    hf = load_tokenizer(tmp_path)
    sp = load_tokenizer(tiny_export)
    assert isinstance(hf, HFTextTokenizer)
    assert hf.encode(TEXT) == sp.encode(TEXT)
    assert hf.decode(sp.encode(TEXT)) == TEXT
    assert (hf.eos_id, hf.bos_id, hf.add_bos) == (sp.eos_id, sp.bos_id, False)
    dec = IncrementalDecoder(hf, [])
    assert "".join([dec.push(i) for i in hf.encode(TEXT)] + [dec.flush()]) == TEXT
