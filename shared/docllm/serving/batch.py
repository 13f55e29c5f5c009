"""The model side of continuous batching: one KV cache row per sequence, each at its own length.

:class:`~docllm.model.gpt.GPT` decodes a batch whose rows all share one position (its
:class:`~docllm.model.gpt.KVCache` has a single ``pos``). Continuous batching needs rows that
joined at different times and hold prompts of different lengths, so here:

* :class:`SlotCache` holds keys and values for ``max_batch`` rows, preallocated to the context
  length once; the running sequences occupy rows ``0..n-1`` (the engine keeps them packed, so a
  step reads a prefix of the cache instead of gathering scattered rows);
* :func:`prefill` runs one prompt through the model's own blocks into its row (the causal
  kernel, exactly as ``GPT.forward`` computes it) and returns the last position's logits only;
* :func:`decode_step` advances every running row by one token in one batched forward that
  reuses the model's modules and weights: the new key/value of row ``i`` is written at its own
  position ``pos[i]``, rotary angles (or learned positions) are taken per row, and a boolean
  mask lets row ``i`` see keys ``0..pos[i]`` only.

Greedy decoding through these functions gives the tokens ``GPT.generate(temperature=0)`` gives,
whether a sequence runs alone or beside others (``tests/unit/serving/test_batch.py``).

Shapes: n running rows, C = n_embd, nh heads, hs head size, S keys attended, V vocabulary.
"""

# Single-letter upper-case shape names (C, S, T) and F for functional follow nanoGPT.
# ruff: noqa: N806, N812

from __future__ import annotations

import functools
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from docllm.model.gpt import GPT, Block, KVCache, apply_rotary


class DecodeLinear(nn.Module):
    """An ``nn.Linear`` for decoding on the CPU: one row through the column-major weight (the fastest
    for one row, :func:`relayout_for_decode`), several rows through a copy of the weight packed by
    oneDNN for ``rows`` rows.

    MKL's fp32 GEMM is slow for a few rows on this project's CPU: the 32k x 256 output head took 7.6 ms
    for 8 rows (1.6 ms for one), the oneDNN-packed weight 3.5 ms (measured on one core of an AVX-512
    EPYC, torch 2.13). The packed copy is what torch.compile's CPU backend uses for linears
    (``torch.ops.mkldnn._linear_pointwise``); it doubles the weights' memory. Results equal the plain
    linear's up to float rounding (about 1e-6 on the logits).
    """

    def __init__(self, linear: nn.Linear, rows: int) -> None:
        super().__init__()
        self.weight = linear.weight  # the same Parameter: a tied embedding stays tied
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        # bf16: the packed weight is the fastest for one row too (AVX512-BF16 dot products; the
        # 32k x 256 head took 0.41 ms for one row packed, 1.5 ms in fp32 column-major and 2.1 ms in
        # bf16 through F.linear, one core of this project's EPYC).
        self.packed_for_one = linear.weight.dtype == torch.bfloat16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == self.in_features and not self.packed_for_one:
            return F.linear(x, self.weight, self.bias)  # one fp32 row: the column-major weight is faster
        out = torch.ops.mkldnn._linear_pointwise(
            x.reshape(-1, self.in_features), self.packed, self.bias, "none", [], ""
        )
        return cast(torch.Tensor, out.view(*x.shape[:-1], self.out_features))


@functools.cache
def can_pack(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch and this CPU can pack ``dtype`` weights for oneDNN's linear.

    CPU builds with MKL-DNN pack fp32 everywhere; bf16 needs AVX512 (BW, VL, DQ) or AVX-NE-CONVERT,
    which not every CI machine has (an AVX2-only EPYC refuses it), so it is tried once on a tiny
    weight rather than guessed from the CPU's flags.
    """
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return False
    try:
        w = torch.zeros(8, 8, dtype=dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 1)
        torch.ops.mkldnn._linear_pointwise(torch.zeros(1, 8, dtype=dtype), packed, None, "none", [], "")
    except RuntimeError:
        return False
    return True


def pack_for_decode(model: GPT, rows: int) -> GPT:
    """Replace the CPU linears of ``model`` by :class:`DecodeLinear` for batches of ``rows``.

    fp32 is packed for batches of two rows or more, bf16 always. Nothing changes when oneDNN's
    packed linear is not available for the weights' dtype on this CPU or the model is on a GPU.
    """
    weight = model.lm_head.weight
    if not weight.is_cpu or weight.dtype not in (torch.float32, torch.bfloat16) or not can_pack(weight.dtype):
        return model
    if weight.dtype == torch.float32 and rows < 2:
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, DecodeLinear(child, rows))
    return model


def relayout_for_decode(model: GPT) -> GPT:
    """Store fp32 CPU weight matrices taller than wide column-major (same values and shapes); returns ``model``.

    Decoding multiplies one row (or a few) by each weight; for ``y = x @ W.T`` with ``W`` of shape
    (out, in), MKL's fp32 kernel streams a column-major ``W`` about three times faster when
    ``out`` is large: the output head (V, C) took 1.3 ms instead of 4.2 ms per token for a
    32k x 256 head on one core, the 124M head 7.0 instead of 13.1 ms. Square and narrow
    matrices gain nothing and stay as they are; bf16 kernels are faster row-major (measured on
    this project's CPU, an AVX-512 EPYC). The tied embedding shares the head's storage, and
    looking up a few of its rows strided costs microseconds.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.dtype == torch.float32 and module.weight.is_cpu:
            w = module.weight
            if w.size(0) > w.size(1) and w.is_contiguous():
                w.data = w.data.t().contiguous().t()
    return model


class SlotCache:
    """Keys and values of ``max_batch`` sequences, one row each, preallocated to the context length."""

    def __init__(self, model: GPT, max_batch: int) -> None:
        cfg = model.config
        weight = model.lm_head.weight
        shape = (cfg.n_layer, max_batch, cfg.n_head, cfg.block_size, cfg.head_size)
        self.k = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        self.v = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        self.max_batch = max_batch

    def row(self, i: int) -> KVCache:
        """A batch-1 ``KVCache`` whose tensors are views of row ``i`` (what the model's blocks write into)."""
        return _RowView(self, i)

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` positions of row ``src`` into row ``dst`` (keeps running rows packed)."""
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]


class _RowView(KVCache):
    # Not KVCache.__init__: no allocation, the tensors are views into the shared slot cache.
    def __init__(self, cache: SlotCache, i: int) -> None:
        self.k = cache.k[:, i : i + 1]  # (L, 1, nh, block_size, hs)
        self.v = cache.v[:, i : i + 1]
        self.pos = 0


def _blocks(model: GPT) -> list[Block]:
    return cast(list[Block], list(cast(nn.ModuleList, model.transformer["h"])))


def prefill(model: GPT, cache: SlotCache, row: int, ids: torch.Tensor) -> torch.Tensor:
    """Run prompt ``ids`` (T,) into cache row ``row``; returns the logits (V,) after its last token.

    Only the last position goes through the output head: a 100-token prompt would otherwise cost
    100 x V x C multiply-adds for logits nobody reads.
    """
    T = ids.size(0)
    view = cache.row(row)
    x = model.transformer["wte"](ids[None, :])  # (1, T, C)
    rope: tuple[torch.Tensor, torch.Tensor] | None = None
    if model.config.rotary:
        rope = (model.rope_cos[:T], model.rope_sin[:T])  # (T, hs)
    else:
        x = x + model.transformer["wpe"](torch.arange(T, device=ids.device))
    for block in _blocks(model):
        x = block(x, rope, view)  # writes keys/values 0..T-1 of this row
    x = model.transformer["ln_f"](x[:, -1, :])  # (1, C)
    return cast(torch.Tensor, model.lm_head(x)[0])  # (V,)


def decode_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Attention of one query per row over its cached keys: ``F.scaled_dot_product_attention``,
    except for bf16 on the CPU, where two matmuls and an fp32 softmax are written out.

    PyTorch's CPU flash kernel is slow in bf16 for a single query: for 8 rows, 12 heads and 400
    keys it took 4.4 ms against 0.58 ms written out (4 heads: 1.4 against 0.24 ms; one core of this
    project's EPYC, torch 2.13), which made attention the largest cost of a bf16 decoding step.
    The scores are ``keys @ q`` rather than ``q @ keys.T``: bf16 matmul with a transposed operand
    is the slow case (8 rows, 4 heads, 400 keys: 0.20 against 0.59 ms). In fp32 the kernel is as
    fast as the written-out form and stays.
    """
    if q.dtype != torch.bfloat16 or not q.is_cpu:
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    scores = (keys @ q.transpose(-1, -2)).transpose(-1, -2).float() * q.size(-1) ** -0.5  # (n, nh, 1, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1).to(values.dtype) @ values


def decode_step(model: GPT, cache: SlotCache, tokens: torch.Tensor, pos: torch.Tensor, span: int) -> torch.Tensor:
    """One new token for each of rows ``0..n-1``; returns logits (n, V).

    ``tokens`` (n,) are each row's latest token, ``pos`` (n,) the position it takes (the row's
    cached length); ``span`` is ``max(pos) + 1``, passed in by the caller, which knows it without
    reading the tensor back.
    """
    cfg = model.config
    n, C, nh, hs = tokens.size(0), cfg.n_embd, cfg.n_head, cfg.head_size
    rows = torch.arange(n, device=tokens.device)
    x = model.transformer["wte"](tokens)[:, None, :]  # (n, 1, C)
    rope: tuple[torch.Tensor, torch.Tensor] | None = None
    if cfg.rotary:
        rope = (model.rope_cos[pos][:, None, None, :], model.rope_sin[pos][:, None, None, :])  # (n, 1, 1, hs)
    else:
        x = x + model.transformer["wpe"](pos)[:, None, :]
    # Row i sees its own keys 0..pos[i]; a single row sees every key up to span, no mask needed.
    mask = None
    if n > 1:
        mask = (torch.arange(span, device=tokens.device)[None, :] <= pos[:, None])[:, None, None, :]  # (n, 1, 1, S)
    for layer, block in enumerate(_blocks(model)):
        attn = block.attn
        q, k, v = attn.c_attn(block.ln_1(x)).split(C, dim=2)  # 3 x (n, 1, C)
        q = q.view(n, nh, hs)[:, :, None, :]  # (n, nh, 1, hs)
        k = k.view(n, nh, hs)[:, :, None, :]
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        cache.k[layer, rows, :, pos] = k[:, :, 0, :]  # (n, nh, hs) into each row's own position
        cache.v[layer, rows, :, pos] = v.view(n, nh, hs)
        keys = cache.k[layer, :n, :, :span]  # (n, nh, S, hs)
        values = cache.v[layer, :n, :, :span]
        y = decode_attention(q, keys, values, mask)  # (n, nh, 1, hs)
        x = x + attn.c_proj(y.view(n, 1, C))
        x = x + block.mlp(block.ln_2(x))
    x = model.transformer["ln_f"](x[:, 0, :])  # (n, C)
    return cast(torch.Tensor, model.lm_head(x))  # (n, V)
