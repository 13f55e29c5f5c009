"""A decoder-only transformer in one file, readable top to bottom.

References: Radford et al. 2019 (GPT-2: pre-norm blocks, init scaled by
1/sqrt(2·n_layer) on residual projections); Su et al. 2021 (RoFormer: rotary
positions, here in the half-split "rotate_half" layout Hugging Face uses);
Shazeer 2020 (SwiGLU); Zhang & Sennrich 2019 (RMSNorm); Touvron et al. 2023
(Llama: rotary + SwiGLU + RMSNorm, no biases). Layout follows nanoGPT.

Shapes: B batch, T sequence, C = n_embd, nh heads, hs = C // nh head size,
S keys (T plus cached positions), V vocabulary.

Example
-------
>>> import torch
>>> from docllm.model.config import ModelConfig
>>> model = GPT(ModelConfig.preset("tiny", vocab_size=512))
>>> logits, _ = model(torch.zeros(2, 16, dtype=torch.long))
>>> tuple(logits.shape)
(2, 16, 512)
>>> _, loss = model(torch.zeros(2, 16, dtype=torch.long), torch.zeros(2, 16, dtype=torch.long))
>>> loss.shape
torch.Size([])
"""

# Single-letter upper-case shape names (B, T, C, S) and F for functional follow the papers and nanoGPT.
# ruff: noqa: N806, N812

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from docllm.model.attention import causal_attention
from docllm.model.config import ModelConfig
from docllm.model.loss import Distillation, linear_cross_entropy


class KVCache:
    """Keys and values of every layer for incremental decoding, preallocated to the context length."""

    def __init__(self, config: ModelConfig, batch: int, *, device: torch.device, dtype: torch.dtype) -> None:
        shape = (config.n_layer, batch, config.n_head, config.block_size, config.head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0  # positions filled; advanced by GPT.forward after the last layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = k.size(2)
        self.k[layer, :, :, self.pos : self.pos + t] = k
        self.v[layer, :, :, self.pos : self.pos + t] = v
        return self.k[layer, :, :, : self.pos + t], self.v[layer, :, :, : self.pos + t]  # (B, nh, S, hs)


def rotary_tables(config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (block_size, hs), duplicated halves as in HF's rotate_half layout."""
    hs = config.head_size
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.float32) / hs))  # (hs/2,)
    freqs = torch.outer(torch.arange(config.block_size, dtype=torch.float32), inv_freq)  # (T, hs/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hs)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + hs/2) of x (B, nh, T, hs) by position-dependent angles."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos + rotated * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.dropout = config.dropout
        # q, k, v stacked along the output dimension: rows [q | k | v], each head-major.
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        cache: KVCache | None,
    ) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if rope is not None:
            cos, sin = rope  # (T, hs) for the positions of x
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        start = 0
        if cache is not None:
            start = cache.pos
            k, v = cache.update(self.layer, k, v)  # (B, nh, S, hs)
        dropout_p = self.dropout if self.training else 0.0
        if start == 0:
            y = causal_attention(q, k, v, dropout_p=dropout_p)  # (B, nh, T, hs)
        else:
            mask = None  # T == 1: one new query sees every cached key
            if T > 1:
                # A chunk after a cached prefix: query i (absolute start+i) sees keys 0..start+i.
                S = k.size(2)
                rows = torch.arange(T, device=x.device)[:, None] + start
                mask = rows >= torch.arange(S, device=x.device)[None, :]  # (T, S)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.swiglu = config.variant == "llama"
        hidden = config.mlp_hidden
        # SwiGLU: one matmul produces [gate | up]; export splits it into gate_proj and up_proj.
        self.c_fc = nn.Linear(config.n_embd, (2 if self.swiglu else 1) * hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, hidden) or (B, T, 2·hidden)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")  # HF "gelu_pytorch_tanh"
        return self.dropout(self.c_proj(h))  # (B, T, C)


def make_norm(config: ModelConfig) -> nn.Module:
    if config.variant == "llama":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, cache: KVCache | None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    rope_cos: torch.Tensor  # (block_size, hs), rotary variants only
    rope_sin: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "drop": nn.Dropout(config.dropout),
                "h": nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                "ln_f": make_norm(config),
            }
        )
        if not config.rotary:
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = cast(nn.Embedding, self.transformer["wte"]).weight  # weight tying
        if config.rotary:
            cos, sin = rotary_tables(config)
            # Not persistent: recomputed from the config, so checkpoints hold weights only.
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # residual projections: GPT-2 scaling
                nn.init.normal_(p, mean=0.0, std=config.init_std / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)

    def num_params(self, *, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= cast(nn.Embedding, self.transformer["wpe"]).weight.numel()
        return n

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        distill: Distillation | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(logits (B, T, V), None)`` for token ids ``idx`` (B, T); ``(None, loss)`` with ``targets``.

        The loss is the mean cross-entropy, computed without materialising fp32
        logits (:func:`~docllm.model.loss.linear_cross_entropy`). Targets equal to -1 are ignored.
        With ``distill`` (the teacher's hidden states for the same tokens), the loss is the
        distillation loss instead (:func:`~docllm.model.loss.linear_distillation_loss`).
        With ``cache``, ``idx`` continues the cached sequence.
        """
        x = self.hidden_states(idx, cache=cache)
        if targets is not None:
            # Training and validation need only the loss: no (B, T, V) fp32 logits (see model/loss.py).
            h, t = x.view(-1, x.size(-1)), targets.reshape(-1)
            if distill is None:
                return None, linear_cross_entropy(h, self.lm_head.weight, t)
            return None, distill.loss(h, self.lm_head.weight, t)
        return self.lm_head(x), None  # (B, T, V)

    def hidden_states(self, idx: torch.Tensor, *, cache: KVCache | None = None) -> torch.Tensor:
        """The final hidden states (B, T, C), after the last norm: what the LM head multiplies."""
        T = idx.size(1)
        start = cache.pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        x = self.transformer["wte"](idx)  # (B, T, C)
        rope: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.config.rotary:
            rope = (self.rope_cos[start : start + T], self.rope_sin[start : start + T])  # (T, hs)
        else:
            pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
            x = x + self.transformer["wpe"](pos)  # (B, T, C)
        x = self.transformer["drop"](x)
        for block in cast(nn.ModuleList, self.transformer["h"]):
            x = block(x, rope, cache)
        if cache is not None:
            cache.pos += T
        return cast(torch.Tensor, self.transformer["ln_f"](x))  # (B, T, C)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample ``max_new_tokens`` continuations of ``idx`` (B, T); returns (B, T + new).

        Uses a KV cache while everything fits in the context; beyond it, recomputes
        over the last ``block_size`` tokens. ``temperature`` 0 is greedy.
        """
        self.eval()
        use_cache = idx.size(1) + max_new_tokens <= self.config.block_size
        cache = (
            KVCache(self.config, idx.size(0), device=idx.device, dtype=self.lm_head.weight.dtype) if use_cache else None
        )
        out = idx
        step_input = idx
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            context = step_input if use_cache else out[:, -self.config.block_size :]
            logits, _ = self(context, cache=cache)
            logits = logits[:, -1, :].float()  # (B, V)
            if temperature == 0.0:
                nxt = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (B, 1)
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
            if eos_id is not None:
                nxt = nxt.masked_fill(done[:, None], eos_id)
                done |= nxt[:, 0] == eos_id
            out = torch.cat((out, nxt), dim=1)
            step_input = nxt
            if eos_id is not None and bool(done.all()):
                break
        return out
