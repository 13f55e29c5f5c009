"""A tiny base model and dataset version for the LoRA tests, built here in a few seconds.

The base is what a regulated user's base is: one of the platform's own earlier models, i.e. a
docllm Llama export (``docllm.model.export.export_hf``) with a SentencePiece tokenizer trained here
and exported to Hugging Face files (``docllm.tokenizer.hf_export``). Its weights are random, scaled
up (as the vLLM parity test does) so that greedy decoding has few near-ties between engines. Heads
are 32 wide: vLLM's CPU attention has no kernel for 16.

The dataset version holds documents whose sentences the answer-tuning rules turn into examples
(headings, definitions, limits, procedures, identifiers), one document per "service widget".
"""

from __future__ import annotations

import json
from pathlib import Path

import sentencepiece as spm
import torch

from docllm.dataset.versions import SplitRecord
from docllm.model.config import ModelConfig
from docllm.model.export import export_hf
from docllm.model.gpt import GPT
from docllm.tokenizer.hf_export import export_hf as export_tokenizer
from tests.unit.tokenizer.conftest import train_on_texts
from tests.unit.tokenizer.corpus import texts

BLOCK_SIZE = 256
VOCAB = 512


def document(i: int) -> str:
    return "\n\n".join(
        [
            f"# Configuring widget{i} logging",
            f"Widget{i} logging records every request made to the widget{i} endpoint.",
            f"A widget{i} is a container for objects stored in Amazon S3.",
            f"You can create up to {10 + i} widget{i} replicas in each of your AWS accounts.",
            f"To enable logging on widget{i}, you set the status value to `Enabled{i}`.",
        ]
    )


def records(n_docs: int = 8) -> list[SplitRecord]:
    return [SplitRecord(chunk_id=f"w{i}-0", doc_key=f"s3/widget{i}.md", text=document(i)) for i in range(n_docs)]


def write_dataset(root: Path, n_docs: int = 8) -> Path:
    """``train.jsonl`` (the documents), ``validation.jsonl`` and ``test.jsonl`` (others), a manifest."""
    root.mkdir(parents=True, exist_ok=True)

    def write(name: str, recs: list[SplitRecord]) -> None:
        (root / name).write_text("".join(r.model_dump_json() + "\n" for r in recs), encoding="utf-8")

    write("train.jsonl", records(n_docs))
    held = [SplitRecord(chunk_id=f"h{i}", doc_key=f"s3/held{i}.md", text=document(100 + i)) for i in range(2)]
    write("validation.jsonl", held[:1])
    write("test.jsonl", held[1:])
    (root / "manifest.json").write_text(json.dumps({"version": "ds-lora-test"}), encoding="utf-8")
    return root


def build_base(root: Path, *, seed: int = 17) -> Path:
    """A docllm Llama export with its tokenizer: the base model directory."""
    tok_dir = root / "tokenizer"
    tok_dir.mkdir(parents=True)
    corpus = texts(200, seed=7) + [document(i) for i in range(120)]
    model_file = train_on_texts(tok_dir, corpus, vocab_size=VOCAB)
    export_tokenizer(model_file, tok_dir)
    torch.manual_seed(seed)
    cfg = ModelConfig.preset("tiny", vocab_size=VOCAB, variant="llama", n_layer=2, n_embd=64, n_head=2,
                             block_size=BLOCK_SIZE)  # fmt: skip
    model = GPT(cfg).eval()
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    never = [i for i in range(sp.get_piece_size()) if sp.is_byte(i) or sp.is_unknown(i)]
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
        model.lm_head.weight[never] = 0.0  # see tests/integration/serving/test_vllm_parity.py
    return export_hf(model, root / "base", tokenizer_dir=tok_dir, card={"name": "LoRA test base"})
