"""Decoder-only transformer, its configuration and its Hugging Face export.

Importing this package does not import torch: ``ModelConfig`` lives in the light
:mod:`docllm.model.config`; the model (:mod:`docllm.model.gpt`), the export
(:mod:`docllm.model.export`) and :func:`generate` load torch when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from docllm.model.config import ModelConfig, Variant, pad_vocab

if TYPE_CHECKING:
    from docllm.model.sampling import generate, generate_text

__all__ = ["ModelConfig", "Variant", "generate", "generate_text", "pad_vocab"]


def __getattr__(name: str) -> Any:
    # Lazy so that Lambdas reading ModelConfig never pay for torch.
    if name in ("generate", "generate_text"):
        from docllm.model import sampling

        return getattr(sampling, name)
    raise AttributeError(name)
