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

Distillation (``linear_distillation_loss``) needs the student's whole distribution, not only its
target's log-probability, and the teacher's beside it. It runs in its own function so the plain
path above does no extra work. It goes over the rows in chunks: student and teacher logits of a
chunk are computed, turned into the chunk's loss and its gradient with respect to the student's
logits, and the gradient is pushed through the LM head at once (``dh = g @ W``, ``dW += g.T @ h``).
Neither model's (N, V) logits ever exist whole; the price over the plain path is the teacher's
head matmul and the softmaxes, and the gradients of ``h`` and ``W`` held from forward to backward
((N, C) and (V, C) fp32, the sizes of the activations and of the head they are gradients of).

Example::

    loss = linear_distillation_loss(h, model.lm_head.weight, targets, teacher_h, teacher.lm_head.weight,
                                    temperature=2.0, alpha=0.5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

IGNORE_INDEX = -1
# fp32 scratch of ROWS x V: 16 x 32k x 4 B = 2 MiB, about one core's L2.
ROWS = 16
# On a GPU the same loop is bound by launching its ~20 small kernels per chunk, not by a cache: 16-row
# chunks at the 124M shape are one launch-bound chunk per 16 tokens. 1024 rows of a 32k vocabulary are
# 128 MiB of fp32 scratch, which keeps each kernel busy (bench/gpu measures both in one run).
ACCELERATOR_ROWS = 1024
EVAL_ROWS = 256


def _rows(device: torch.device) -> int:
    """Rows per chunk of the in-place loss: sized for a CPU core's cache, or to fill a GPU."""
    return ROWS if device.type == "cpu" else ACCELERATOR_ROWS


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
    step = _rows(logits.device)
    rows = torch.arange(step, device=logits.device)
    scale = valid.float() / n  # 0 for ignored rows: their gradient vanishes
    for s in range(0, logits.size(0), step):
        x = logits[s : s + step].float()  # (k, V) fp32 scratch
        k, t = x.size(0), targets[s : s + step]
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


# --- distillation -----------------------------------------------------------------------------

#: Elements of one chunk's (rows x V) fp32 logits in the distillation loss; a chunk keeps about six
#: such buffers alive (student, teacher, their softmaxes, the gradient). On a CPU 8 MiB each. On a
#: GPU each chunk costs some fifteen kernel launches, and small chunks leave it launch-bound
#: (measured on an H200 at 16k rows x 32k vocabulary: 88 ms with 65-row chunks, see docs/training.md),
#: so chunks there are larger: 128 MiB each, still a sixteenth of such a batch's logits.
DISTILL_CHUNK_ELEMENTS = 2 * 2**20
DISTILL_CHUNK_ELEMENTS_GPU = 32 * 2**20


def distill_rows(n_rows: int, vocab: int, device_type: str = "cpu") -> int:
    """Rows per chunk of :func:`linear_distillation_loss`: as many as fit the scratch budget, at least ROWS."""
    budget = DISTILL_CHUNK_ELEMENTS if device_type == "cpu" else DISTILL_CHUNK_ELEMENTS_GPU
    return max(ROWS, min(n_rows, budget // vocab))


def distill_rows_loss_and_grad(
    student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row loss and its gradient with respect to ``student``, for fp32 logits of shape (k, V).

    ``loss = (1 - alpha) · CE(student, target) + alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T))``
    (Hinton et al. 2015: T² keeps the soft term's gradient on the scale of the hard one's), and
    ``d loss / d student = (1 - alpha) · (softmax(student) - onehot) + alpha · T · (q_s - q_t)``
    with ``q = softmax(logits / T)``.
    """
    t = temperature
    log_p = torch.log_softmax(student, dim=-1)  # (k, V): the LM's own distribution, T = 1
    ce = -log_p.gather(1, targets[:, None]).squeeze(1)  # (k,)
    log_qs = log_p if t == 1.0 else torch.log_softmax(student / t, dim=-1)  # (k, V)
    log_qt = torch.log_softmax(teacher / t, dim=-1)  # (k, V)
    qt = log_qt.exp()
    kl = (qt * (log_qt - log_qs)).sum(-1)  # (k,)
    loss = (1.0 - alpha) * ce + (alpha * t * t) * kl
    grad = log_qs.exp().sub_(qt).mul_(alpha * t)  # soft part, (k, V)
    hard = log_p.exp_()  # (k, V), in place: log_p (and log_qs at T = 1) is not read again
    hard[torch.arange(hard.size(0), device=hard.device), targets] -= 1.0
    grad.add_(hard, alpha=1.0 - alpha)
    return loss, grad


class _LinearDistillation(torch.autograd.Function):
    """Loss and both gradients in forward, chunk by chunk; backward only scales them."""

    @staticmethod
    def forward(  # noqa: PLR0917  (autograd.Function passes inputs positionally)
        ctx: Any,
        h: torch.Tensor,
        w: torch.Tensor,
        targets: torch.Tensor,
        teacher_h: torch.Tensor,
        teacher_w: torch.Tensor,
        temperature: float,
        alpha: float,
    ) -> torch.Tensor:
        dtype = _compute_dtype(h)
        wide = torch.promote_types(dtype, torch.float32)  # softmaxes in fp32 (fp64 when checking gradients)
        valid = targets != IGNORE_INDEX
        scale = valid.to(wide) / valid.sum().clamp(min=1)  # (N,): 1/n on counted rows, 0 on ignored ones
        t = targets.clamp(min=0)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        rows = distill_rows(h.size(0), w.size(0), h.device.type)
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(dtype), w.to(dtype)
            grad_h = torch.empty_like(hc) if need_h else None
            # A wide accumulator: summing many chunks' contributions in bf16 would lose the small ones.
            grad_w = torch.zeros(wc.shape, dtype=wide, device=wc.device) if need_w else None
            total = torch.zeros((), dtype=wide, device=h.device)
            for s in range(0, h.size(0), rows):
                student = (hc[s : s + rows] @ wc.t()).to(wide)  # (k, V)
                teacher = (teacher_h[s : s + rows] @ teacher_w.t()).to(wide)  # (k, V), in the teacher's dtype
                losses, grad = distill_rows_loss_and_grad(student, teacher, t[s : s + rows], temperature, alpha)
                k_scale = scale[s : s + rows]
                total += (losses * k_scale).sum()
                if grad_h is None and grad_w is None:
                    continue
                g = grad.mul_(k_scale[:, None]).to(dtype)  # (k, V): d(mean loss)/d(logits) of the chunk
                if grad_h is not None:
                    grad_h[s : s + rows] = g @ wc  # (k, C)
                if grad_w is not None:
                    grad_w += g.t() @ hc[s : s + rows]  # (V, C)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (h.dtype, w.dtype)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        # Scale in fp32 (grad_w) or the parameters' dtype, after the matmuls: a GradScaler's 2**16
        # never multiplies fp16 activations.
        gh = grad_h.to(h_dtype) * grad_out if grad_h is not None else None
        gw = (grad_w * grad_out).to(w_dtype) if grad_w is not None else None
        return gh, gw, None, None, None, None, None


@torch.compiler.disable  # eager inside a compiled model, as linear_cross_entropy
def linear_distillation_loss(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    teacher_h: torch.Tensor,
    teacher_weight: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Mean over counted rows of ``(1 - alpha)·CE + alpha·T²·KL(teacher_T ‖ student_T)``, chunked.

    ``h`` (N, C) and ``weight`` (V, C) are the student's final hidden states and LM head;
    ``teacher_h`` (N, C_t) and ``teacher_weight`` (V, C_t) the teacher's (no gradient flows to
    them); ``targets`` (N,) with -1 for ignored rows, which count in neither term. Follows
    autocast like :func:`linear_cross_entropy`; the teacher's matmul runs in its own dtype.

    Example
    -------
    >>> h, w = torch.randn(8, 4, requires_grad=True), torch.randn(16, 4, requires_grad=True)
    >>> th, tw = torch.randn(8, 6), torch.randn(16, 6)
    >>> loss = linear_distillation_loss(h, w, torch.arange(8), th, tw, temperature=2.0, alpha=0.5)
    >>> loss.backward(); h.grad.shape
    torch.Size([8, 4])
    """
    if teacher_weight.size(0) != weight.size(0):
        raise ValueError(f"teacher vocabulary {teacher_weight.size(0)} differs from the student's {weight.size(0)}")
    if teacher_h.size(0) != h.size(0):
        raise ValueError(f"teacher rows {teacher_h.size(0)} differ from the student's {h.size(0)}")
    out: torch.Tensor = _LinearDistillation.apply(h, weight, targets, teacher_h, teacher_weight, temperature, alpha)
    return out


@dataclass(frozen=True)
class Distillation:
    """What the student's loss needs from the teacher for one batch (see :meth:`docllm.model.gpt.GPT.forward`)."""

    teacher_hidden: torch.Tensor  # (N, C_t): the teacher's final hidden states, rows as the student's
    teacher_head: torch.Tensor  # (V, C_t): the teacher's LM head
    temperature: float
    alpha: float

    def loss(self, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return linear_distillation_loss(
            h,
            weight,
            targets,
            self.teacher_hidden,
            self.teacher_head,
            temperature=self.temperature,
            alpha=self.alpha,
        )
