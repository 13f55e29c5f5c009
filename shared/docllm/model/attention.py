"""Causal self-attention for training on CPU at short contexts: ``causal_attention``.

PyTorch's CPU flash-attention kernel is right for inference and long
contexts, but its backward is slow at the contexts a CPU trains at: at
T = 128 (B = 4, 12 heads of 64, bf16, one thread) the backward takes 26-38 ms
against 3 ms for the forward, and the 12 layers of the 124M shape spent about
a fifth of a training step there (``docs/benchmarks.md``).

At such contexts the whole (T, T) probability matrix is small (T = 256:
128 KiB per head in bf16), so the textbook algorithm is cheaper: keep the
probabilities from the forward and make the backward four batched matmuls plus
PyTorch's fused softmax backward. Measured at T = 128 under ``torch.compile``:
7.4 ms forward + backward against 29 ms for the flash kernel; from T = 512 the
flash kernel wins, hence ``SHORT_CONTEXT``.

Precision follows autocast as textbook attention would run under it (and as
Hugging Face's eager attention does): the matmuls in the compute dtype, the
softmax accumulated in fp32. In fp32 the results equal SDPA's to 1e-5
(``tests/unit/model/test_attention.py``); in bf16 the error against an fp64
reference is about 1.5x the flash kernel's (both under 1.2% relative).

Example::

    y = causal_attention(q, k, v)  # (B, nh, T, hs) each
"""

# Single-letter upper-case shape names (T) and F for functional follow the papers and nanoGPT.
# ruff: noqa: N806, N812

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

# Longest context that takes the textbook path (measured crossover: between 256 and 512).
SHORT_CONTEXT = 256


class _ShortCausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        shape = q.shape  # (B, nh, T, hs)
        T, scale = q.size(-2), 1.0 / math.sqrt(q.size(-1))
        q, k, v = (t.flatten(0, 1) for t in (q, k, v))  # (B·nh, T, hs)
        # Inputs arrive in one compute dtype; autocast must not upcast the softmax output.
        with torch.autocast(q.device.type, enabled=False):
            future = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu_(1)
            scores = torch.baddbmm(future, q, k.transpose(1, 2), alpha=scale)  # (B·nh, T, T)
            probs = torch.softmax(scores, dim=-1)  # fp32 accumulation inside, compute-dtype output
            y = torch.bmm(probs, v)
        ctx.save_for_backward(q, k, v, probs)
        ctx.scale = scale
        return y.view(shape)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v, probs = ctx.saved_tensors
        shape = grad_y.shape
        g = grad_y.contiguous().flatten(0, 1)  # (B·nh, T, hs)
        grad_v = torch.bmm(probs.transpose(1, 2), g)
        grad_probs = torch.bmm(g, v.transpose(1, 2))  # (B·nh, T, T)
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        # The scale goes on the (T, hs) products, not the (T, T) scores: fewer elements.
        grad_q = torch.bmm(grad_scores, k).mul_(ctx.scale)
        grad_k = torch.bmm(grad_scores.transpose(1, 2), q).mul_(ctx.scale)
        return grad_q.view(shape), grad_k.view(shape), grad_v.view(shape)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, dropout_p: float = 0.0) -> torch.Tensor:
    """Causal attention of q, k, v (B, nh, T, hs), same length T; returns (B, nh, T, hs).

    Training on CPU at T <= ``SHORT_CONTEXT`` without attention dropout takes
    the textbook path above; everything else (GPUs, inference, long contexts,
    dropout) goes to ``scaled_dot_product_attention``.
    """
    short_cpu_training = (
        q.device.type == "cpu"
        and q.size(-2) <= SHORT_CONTEXT
        and dropout_p == 0.0
        and torch.is_grad_enabled()
        and (q.requires_grad or k.requires_grad or v.requires_grad)
    )
    if short_cpu_training:
        if torch.is_autocast_enabled("cpu"):
            # As autocast treats SDPA: one compute dtype for all three (rotary q, k may be fp32 here).
            dtype = torch.get_autocast_dtype("cpu")
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        out: torch.Tensor = _ShortCausalAttention.apply(q, k, v)
        return out
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
