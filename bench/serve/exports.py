"""Random-weight docllm exports of the benchmark's shapes, with a 32k tokenizer trained on the corpus.

Speed does not depend on what the weights hold, only on the shape: ``tiny`` (4 layers, 256 wide)
and ``124m`` (12 layers, 768 wide), both Llama with a 32,000-token vocabulary, as the issue's
measurement used. The tokenizer is trained once with our settings on the Amazon S3 guide and
kept in the work directory, as are the exports, so a second run starts at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from docllm.model.config import ModelConfig
from docllm.model.export import export_hf
from docllm.model.gpt import GPT
from docllm.tokenizer.hf_export import export_hf as export_tokenizer
from docllm.tokenizer.settings import TokenizerSettings
from docllm.tokenizer.train import train_sentencepiece

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "awsdocs"
VOCAB = 32000


def tokenizer_32k(work: Path) -> Path:
    """A 32k SentencePiece tokenizer with its Hugging Face files (trained once, about a minute)."""
    out = work / "tokenizer-32k"
    if (out / "tokenizer.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    text = out / "train.txt"
    with text.open("w", encoding="utf-8") as fh:
        for path in sorted(CORPUS.glob("*/doc_source/*.md")):
            fh.write(path.read_text(encoding="utf-8", errors="replace") + "\n")
    print("training a 32k tokenizer on ../shared/corpus/awsdocs…", file=sys.stderr)
    settings = TokenizerSettings(vocab_size=VOCAB, num_threads=2)
    (out / "tokenizer.model").write_bytes(train_sentencepiece(text, settings))
    export_tokenizer(out / "tokenizer.model", out)
    text.unlink()
    return out


def random_export(work: Path, shape: str) -> Path:
    """``work/export-<shape>``: a seeded random-weight Llama of ``shape`` with the 32k tokenizer."""
    out = work / f"export-{shape}"
    if (out / "model.safetensors").exists():
        return out
    tok = tokenizer_32k(work)
    torch.manual_seed(0)
    # The numbers used a 512-token context for vLLM; 124m's preset has 2048, which only
    # changes the size of preallocated caches, not the work per token.
    cfg = ModelConfig.preset(shape, vocab_size=VOCAB, variant="llama", block_size=512)
    export_hf(GPT(cfg).eval(), out, tokenizer_dir=tok, card={"name": f"bench.serve random {shape}"})
    return out
