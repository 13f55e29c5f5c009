"""Tiny, learnable data and a tiny model for training tests."""

from __future__ import annotations

import numpy as np

from docllm.model.config import ModelConfig, Variant
from docllm.training.config import TrainConfig
from docllm.training.streams import ArrayTokenStream

VOCAB = 64
BLOCK = 16


def corpus(n_tokens: int = 6000, seed: int = 0) -> np.ndarray:
    """A repeated random phrase: easy to learn, so the loss must fall well below uniform."""
    phrase = np.random.default_rng(seed).integers(0, VOCAB, size=37)
    return np.resize(phrase, n_tokens)


def tiny_model(variant: Variant = "llama", dropout: float = 0.0) -> ModelConfig:
    return ModelConfig(
        variant=variant, n_layer=2, n_head=2, n_embd=32, block_size=BLOCK, vocab_size=VOCAB, dropout=dropout
    )


def tiny_train(**kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "max_steps": 12,
        "micro_batch_size": 4,
        "grad_accum_steps": 2,
        "warmup_steps": 2,
        "learning_rate": 3e-3,
        "log_interval": 1,
        "eval_interval": 4,
        "eval_batches": 2,
        "device": "cpu",
        "precision": "fp32",
        "progress": False,
    }
    return TrainConfig.model_validate({**base, **kw})


def streams(seed: int = 0, rank: int = 0, world: int = 1) -> tuple[ArrayTokenStream, ArrayTokenStream]:
    tokens = corpus()
    return (
        ArrayTokenStream(tokens[:5000], block_size=BLOCK, seed=seed, rank=rank, world_size=world),
        ArrayTokenStream(tokens[5000:], block_size=BLOCK, shuffle=False, rank=rank, world_size=world),
    )
