from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from docllm.model.config import ModelConfig, Variant
from docllm.model.exceptions import ExportError, TokenizerFilesError
from docllm.model.export import export_hf, load_hf_export, read_tokenizer_info
from docllm.model.gpt import GPT
from docllm.model.sampling import generate_text

WORDS = [
    "amazon",
    "s3",
    "stores",
    "objects",
    "in",
    "buckets",
    "a",
    "bucket",
    "is",
    "container",
    "for",
    "iam",
    "policies",
    "grant",
    "permissions",
]


@pytest.fixture(scope="module")
def hf_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny word-level tokenizer saved the way transformers saves any fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    out = tmp_path_factory.mktemp("tok")
    fast.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def sp_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sentencepiece as spm

    text = [" ".join(WORDS)] * 40
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_writer=buf,
        vocab_size=40,
        model_type="bpe",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        minloglevel=2,
    )
    out = tmp_path_factory.mktemp("sp")
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    return out


def trained_looking(variant: Variant) -> GPT:
    """Random but not-at-init weights (zero biases and unit norms would hide layout mistakes)."""
    torch.manual_seed(0)
    cfg = ModelConfig(variant=variant, n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=64)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize(
    ("variant", "hf_class"),
    [
        ("gelu-learned", "GPTBigCodeForCausalLM"),
        ("gelu-rotary", "GPTNeoXForCausalLM"),
        ("llama", "LlamaForCausalLM"),
    ],
)
def test_transformers_loads_the_export_and_its_logits_match_ours(
    variant: Variant, hf_class: str, tmp_path: Path, hf_tokenizer_dir: Path
) -> None:
    from transformers import AutoModelForCausalLM

    model = trained_looking(variant)
    export_hf(model, tmp_path, tokenizer_dir=hf_tokenizer_dir)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    assert type(hf).__name__ == hf_class
    x = torch.randint(0, 64, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, _ = model(x)
        theirs = hf(x).logits
    assert (ours - theirs).abs().max().item() <= 1e-4


@pytest.mark.parametrize("variant", ["gelu-learned", "gelu-rotary", "llama"])
def test_export_loads_back_into_our_model_unchanged(variant: Variant, tmp_path: Path) -> None:
    model = trained_looking(variant)
    export_hf(model, tmp_path, tokenizer_dir=None)
    back = load_hf_export(tmp_path)
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_export_carries_tokenizer_files_special_ids_and_a_card(tmp_path: Path, hf_tokenizer_dir: Path) -> None:
    export_hf(trained_looking("llama"), tmp_path, tokenizer_dir=hf_tokenizer_dir, card={"family": "tiny-s3"})
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "README.md",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        assert (tmp_path / name).exists(), name
    config = json.loads((tmp_path / "config.json").read_text())
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 0)
    assert generation["eos_token_id"] == 2
    assert "tiny-s3" in (tmp_path / "README.md").read_text()


def test_generate_text_continues_a_prompt_from_an_export(tmp_path: Path, hf_tokenizer_dir: Path) -> None:
    export_hf(trained_looking("llama"), tmp_path, tokenizer_dir=hf_tokenizer_dir)
    text = generate_text(tmp_path, "amazon s3", max_new_tokens=5, seed=0)
    assert text.startswith("amazon s3")
    assert text == generate_text(tmp_path, "amazon s3", max_new_tokens=5, seed=0)


def test_sentencepiece_only_tokenizer_dir_is_read(sp_tokenizer_dir: Path) -> None:
    info = read_tokenizer_info(sp_tokenizer_dir)
    assert (info.vocab_size, info.pad_id, info.bos_id, info.eos_id) == (40, 0, 2, 3)


def test_tokenizer_larger_than_the_embedding_is_refused(tmp_path: Path, hf_tokenizer_dir: Path) -> None:
    cfg = ModelConfig(variant="llama", n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=8)
    with pytest.raises(ExportError, match="tokens"):
        export_hf(GPT(cfg), tmp_path, tokenizer_dir=hf_tokenizer_dir)


def test_missing_tokenizer_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TokenizerFilesError):
        read_tokenizer_info(tmp_path / "absent")


def test_directory_without_docllm_config_is_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="docllm"):
        load_hf_export(tmp_path)
