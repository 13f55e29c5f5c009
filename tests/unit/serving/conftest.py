"""A tiny random-weight Llama export with a SentencePiece tokenizer trained here (about a second).

The tokenizer uses byte fallback, as ours does, and its training text holds accented letters
only a few times: rarer characters (the emoji) come out as byte pieces, so streaming has to
hold back half-decoded characters.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from docllm.model.config import ModelConfig, Variant
from docllm.model.export import export_hf
from docllm.model.gpt import GPT

TEXT = (
    "Amazon S3 stores objects in buckets . A bucket is a container for objects . "
    "Versioning keeps every version of an object . Lifecycle rules expire old versions . "
    "Use the console or the CLI to enable versioning on a bucket . Café naïve résumé ### Question : Answer :"
)
WORDS = TEXT.split()


def train_sentencepiece(out: Path) -> Path:
    import random

    import sentencepiece as spm

    rng = random.Random(0)
    lines = [" ".join(rng.choices(WORDS, k=12)) for _ in range(300)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        add_dummy_prefix=False,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        user_defined_symbols=["\n"],
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        minloglevel=2,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    return out


def tiny_model(vocab_size: int = 400, variant: Variant = "llama", block_size: int = 128) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(variant=variant, n_layer=2, n_head=4, n_embd=64, block_size=block_size, vocab_size=vocab_size)
    model = GPT(cfg).eval()
    with torch.no_grad():  # larger weights than at init: sharper logits, fewer near-ties for argmax
        for p in model.parameters():
            p.mul_(3.0)
    return model


def build_export(root: Path, variant: Variant = "llama", block_size: int = 128) -> Path:
    tok = train_sentencepiece(root / "tok")
    return export_hf(tiny_model(variant=variant, block_size=block_size), root / "export", tokenizer_dir=tok)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_export(tmp_path_factory.mktemp("serving"))
