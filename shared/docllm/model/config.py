"""Model configuration: light (no torch) so Lambdas and the family loader can import it.

Three architecture variants, each chosen so that the Hugging Face export is exact:

``gelu-learned``
    GPT-2 shape: learned positions, LayerNorm with bias, GELU (tanh), biases
    everywhere. Exports as ``GPTBigCodeForCausalLM`` (``multi_query: false``).
``gelu-rotary``
    The same block with rotary positions (half-split, full head dim) instead of
    a position table. Exports as ``GPTNeoXForCausalLM`` (sequential residual).
``llama``
    Rotary, SwiGLU, RMSNorm, no biases. Exports as ``LlamaForCausalLM``, the
    architecture Bedrock Custom Model Import accepts.

Example
-------
>>> cfg = ModelConfig.preset("tiny", vocab_size=8000)
>>> cfg.vocab_size, cfg.n_layer
(8000, 4)
>>> ModelConfig.preset("tiny", vocab_size=8001).vocab_size
8064
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Variant = Literal["gelu-learned", "gelu-rotary", "llama"]
PresetName = Literal["tiny", "124m", "355m", "1.3b"]

VOCAB_MULTIPLE = 64

# Shapes only; vocabulary and context come from the tokenizer and the family.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 4, "n_head": 4, "n_embd": 256, "block_size": 256},
    "124m": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 2048},
    "355m": {"n_layer": 24, "n_head": 16, "n_embd": 1024, "block_size": 2048},
    "1.3b": {"n_layer": 24, "n_head": 16, "n_embd": 2048, "block_size": 2048},
}

HF_ARCHITECTURE: dict[str, str] = {
    "gelu-learned": "GPTBigCodeForCausalLM",
    "gelu-rotary": "GPTNeoXForCausalLM",
    "llama": "LlamaForCausalLM",
}


def pad_vocab(size: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """Round a tokenizer's vocabulary up to a multiple of ``multiple`` (faster matmuls).

    Example
    -------
    >>> pad_vocab(50257)
    50304
    """
    if size <= 0:
        raise ValueError(f"vocab_size must be positive, got {size}")
    return -(-size // multiple) * multiple


class ModelConfig(BaseModel):
    """Shape and architecture of a decoder-only transformer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: Variant = Field(default="gelu-learned", description="architecture variant (see module doc)")
    n_layer: int = Field(ge=1, description="transformer blocks")
    n_head: int = Field(ge=1, description="attention heads")
    n_embd: int = Field(ge=8, description="model width")
    block_size: int = Field(ge=8, description="context length in tokens")
    vocab_size: int = Field(ge=1, description="embedding rows: the tokenizer's vocabulary, padded")
    intermediate_size: int | None = Field(
        default=None,
        description="MLP hidden width; None: 4*n_embd (GELU) or ~8/3*n_embd rounded to 64 (SwiGLU)",
    )
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout on residual branches and attention")
    norm_eps: float = Field(default=1e-5, gt=0.0, description="LayerNorm / RMSNorm epsilon")
    rope_theta: float = Field(default=10000.0, gt=0.0, description="rotary base (rotary variants only)")
    init_std: float = Field(default=0.02, gt=0.0, description="GPT-2 style init standard deviation")

    @model_validator(mode="after")
    def _check_heads(self) -> Self:
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.variant != "gelu-learned" and (self.n_embd // self.n_head) % 2 != 0:
            raise ValueError("head size (n_embd / n_head) must be even for rotary positions")
        return self

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def rotary(self) -> bool:
        return self.variant != "gelu-learned"

    @property
    def bias(self) -> bool:
        """GELU variants carry biases (as their HF classes do); Llama has none."""
        return self.variant != "llama"

    @property
    def mlp_hidden(self) -> int:
        if self.intermediate_size is not None:
            return self.intermediate_size
        if self.variant == "llama":
            # SwiGLU has three matrices: 8/3·d keeps parameters equal to a 4·d GELU MLP.
            return pad_vocab(int(8 * self.n_embd / 3), 64)
        return 4 * self.n_embd

    @property
    def hf_architecture(self) -> str:
        return HF_ARCHITECTURE[self.variant]

    @classmethod
    def preset(
        cls,
        name: PresetName | str,
        *,
        vocab_size: int,
        variant: Variant = "gelu-learned",
        **overrides: object,
    ) -> ModelConfig:
        """A named shape with the tokenizer's vocabulary (padded to a multiple of 64).

        Example
        -------
        >>> ModelConfig.preset("124m", vocab_size=32000, variant="llama", block_size=4096).block_size
        4096
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
        fields: dict[str, object] = {**PRESETS[name], "variant": variant, "vocab_size": pad_vocab(vocab_size)}
        fields.update(overrides)
        return cls.model_validate(fields)

    def num_params(self, *, non_embedding: bool = True) -> int:
        """Parameter count from the shape alone (the head is tied to the embedding)."""
        d, hidden = self.n_embd, self.mlp_hidden
        b = 1 if self.bias else 0
        attn = 4 * d * d + 4 * d * b
        mlp = (3 * d * hidden) if self.variant == "llama" else (2 * d * hidden + hidden * b + d * b)
        norms = 2 * d * (1 + b)
        total = self.n_layer * (attn + mlp + norms) + d * (1 + b)
        if not non_embedding:
            total += self.vocab_size * d
            if self.variant == "gelu-learned":
                total += self.block_size * d
        return total

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token: 6N for the matmuls plus 12·L·d·T for attention scores.

        N counts the tied output head (a real matmul) but not the position table (a lookup).
        """
        t = seq_len or self.block_size
        n = self.num_params(non_embedding=True) + self.vocab_size * self.n_embd
        return 6 * n + 12 * self.n_layer * self.n_embd * t
