"""Cross-entropy of the LM head without materialising fp32 logits: ``linear_cross_entropy``.

The plain path (``logits = h @ W.T``, then ``cross_entropy(logits.float())``)
makes several full passes over an (N, V) tensor in fp32: the upcast, the
log-softmax, the zero-filled gradient, its backward, the downcast. At the 124M
shape on a CPU those passes cost more than the LM-head matmuls themselves.

Here the (N, V) logits are computed once in the compute dtype (bf16 under
autocast) and then, a few rows at a time so the fp32 scratch stays in cache,
turned in place into the gradient of the mean loss with respect to the logits.
Backward is then just the two matmuls. The loss and gradients equal
``F.cross_entropy(logits.float(), targets, ignore_index=-1)`` up to rounding
(``tests/unit/model/test_loss.py``); without grad (validation) only the loss is
computed, chunk by chunk, and no (N, V) buffer exists at all.

The same idea is public as Liger Kernel's fused linear cross-entropy and Apple's
Cut Cross-Entropy (GPU kernels); this is a plain-PyTorch version of it.

Example::

    loss = linear_cross_entropy(hidden.view(-1, C), model.lm_head.weight, targets.view(-1))
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE_INDEX = -1
# fp32 scratch of ROWS x V: 16 x 32k x 4 B = 2 MiB, about one core's L2.
ROWS = 16
EVAL_ROWS = 256


def _compute_dtype(h: torch.Tensor) -> torch.dtype:
    device = h.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return h.dtype


def _loss_and_grad_in_place(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, n: torch.Tensor
) -> torch.Tensor:
    """Per-row losses; ``logits`` is overwritten with d(mean loss)/d(logits)."""
    losses = torch.empty(logits.size(0), dtype=torch.float32, device=logits.device)
    rows = torch.arange(ROWS, device=logits.device)
    scale = valid.float() / n  # 0 for ignored rows: their gradient vanishes
    for s in range(0, logits.size(0), ROWS):
        x = logits[s : s + ROWS].float()  # (k, V) fp32 scratch
        k, t = x.size(0), targets[s : s + ROWS]
        x.sub_(x.amax(-1, keepdim=True))  # stable softmax
        target_logit = x.gather(1, t[:, None]).squeeze(1)
        x.exp_()
        total = x.sum(-1)
        losses[s : s + k] = total.log() - target_logit
        x[rows[:k], t] -= total  # minus one-hot, before normalising: becomes p_t - 1 below
        # softmax, scale and the cast back in one pass, written over the logits
        torch.mul(x, (scale[s : s + k] / total)[:, None], out=logits[s : s + k])
    return losses


def _loss_only(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    losses = []
    for s in range(0, h.size(0), EVAL_ROWS):
        logits = (h[s : s + EVAL_ROWS] @ w.t()).float()
        t = targets[s : s + EVAL_ROWS]
        losses.append(torch.logsumexp(logits, -1) - logits.gather(1, t[:, None]).squeeze(1))
    return torch.cat(losses) * valid


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        dtype = _compute_dtype(h)
        valid = targets != IGNORE_INDEX
        n = valid.sum().clamp(min=1)
        t = targets.clamp(min=0)
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(dtype), w.to(dtype)
            if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
                return _loss_only(hc, wc, t, valid).sum() / n
            grad_logits = hc @ wc.t()  # (N, V), becomes the gradient in place
            losses = _loss_and_grad_in_place(grad_logits, t, valid, n)
        ctx.save_for_backward(grad_logits, hc, wc)
        ctx.dtypes = (h.dtype, w.dtype)
        return (losses * valid).sum() / n

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        grad_logits, hc, wc = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        grad_h = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_h = (grad_logits @ wc).to(h_dtype).mul_(grad_out)  # (N, C): cheap to scale
        if ctx.needs_input_grad[1]:
            if hc.dtype == torch.float16:
                # A loss scaler's grad_out (2**16) times activations overflows fp16: scale after.
                grad_w = (grad_logits.t() @ hc).to(w_dtype).mul_(grad_out)
            else:
                # Scale the small (N, C) operand, not the (V, C) product.
                grad_w = (grad_logits.t() @ (hc * grad_out.to(hc.dtype))).to(w_dtype)
        return grad_h, grad_w, None


@torch.compiler.disable  # eager inside a compiled model: the row loop is the point, not a graph to trace
def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``h @ weight.T`` against ``targets`` (-1 ignored), without fp32 logits.

    ``h`` is (N, C), ``weight`` (V, C), ``targets`` (N,). Follows autocast: under
    bf16 autocast the matmuls run in bf16 and the softmax in fp32, as the plain
    path would.
    """
    out: torch.Tensor = _LinearCrossEntropy.apply(h, weight, targets)
    return out
