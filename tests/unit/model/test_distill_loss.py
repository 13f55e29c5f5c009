"""The chunked distillation loss against a naive reference, gradcheck, and the plain path beside it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812  (the PyTorch convention)

from docllm.model import loss as loss_module
from docllm.model.config import ModelConfig
from docllm.model.gpt import GPT
from docllm.model.loss import Distillation, distill_rows, linear_cross_entropy, linear_distillation_loss

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _inputs(
    n: int = 45, c: int = 12, ct: int = 20, v: int = 97, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, c, generator=g, dtype=dtype)
    w = torch.randn(v, c, generator=g, dtype=dtype) * 0.3
    th = torch.randn(n, ct, generator=g, dtype=dtype)
    tw = torch.randn(v, ct, generator=g, dtype=dtype) * 0.4
    y = torch.randint(0, v, (n,), generator=g)
    y[::4] = -1  # ignored positions count in neither term
    return h, w, y, th, tw


def naive(
    h: torch.Tensor,
    w: torch.Tensor,
    y: torch.Tensor,
    th: torch.Tensor,
    tw: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """The textbook formula on whole logits: (1 - alpha)·CE + alpha·T²·KL(teacher_T ‖ student_T)."""
    s, t = (h @ w.t()).float(), (th @ tw.t()).float()
    keep = y != -1
    ce = F.cross_entropy(s, y, ignore_index=-1)
    log_qs = F.log_softmax(s[keep] / temperature, dim=-1)
    log_qt = F.log_softmax(t[keep] / temperature, dim=-1)
    kl = F.kl_div(log_qs, log_qt, log_target=True, reduction="batchmean")
    return (1 - alpha) * ce + alpha * temperature**2 * kl


def _loss_and_grads(fn, h, w, y, th, tw, *, scale: float = 1.0, bf16: bool = False, **kw):  # type: ignore[no-untyped-def]
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = fn(h, w, y, th, tw, **kw)
    (out * scale).backward()
    return out.detach(), h.grad, w.grad


@pytest.mark.parametrize(("temperature", "alpha"), [(1.0, 0.5), (2.0, 0.5), (4.0, 0.9), (0.5, 1.0), (2.0, 0.0)])
def test_loss_and_gradients_equal_the_naive_formula(temperature: float, alpha: float) -> None:
    args = _inputs(seed=1)
    ours = _loss_and_grads(linear_distillation_loss, *args, temperature=temperature, alpha=alpha)
    ref = _loss_and_grads(naive, *args, temperature=temperature, alpha=alpha)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("temperature", "alpha"), [(1.0, 0.5), (2.5, 0.3), (0.7, 1.0), (3.0, 0.0)])
def test_gradcheck_in_float64(temperature: float, alpha: float) -> None:
    h, w, y, th, tw = _inputs(n=9, c=4, ct=3, v=7, seed=2, dtype=torch.float64)
    h.requires_grad_()
    w.requires_grad_()

    def fn(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return linear_distillation_loss(h, w, y, th, tw, temperature=temperature, alpha=alpha)

    assert torch.autograd.gradcheck(fn, (h, w))


def test_gradcheck_across_several_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loss_module, "DISTILL_CHUNK_ELEMENTS", 1)  # ROWS rows per chunk
    h, w, y, th, tw = _inputs(n=2 * loss_module.ROWS + 3, c=3, ct=2, v=5, seed=3, dtype=torch.float64)
    h.requires_grad_()
    w.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda h, w: linear_distillation_loss(h, w, y, th, tw, temperature=2.0, alpha=0.5), (h, w)
    )


def test_chunking_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    args = _inputs(n=5 * loss_module.ROWS + 7, seed=4)
    whole = _loss_and_grads(linear_distillation_loss, *args, temperature=2.0, alpha=0.5)
    monkeypatch.setattr(loss_module, "DISTILL_CHUNK_ELEMENTS", 1)
    assert distill_rows(args[0].size(0), args[1].size(0)) == loss_module.ROWS  # six chunks
    chunked = _loss_and_grads(linear_distillation_loss, *args, temperature=2.0, alpha=0.5)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_a_chunk_never_holds_the_whole_logits_of_a_real_batch() -> None:
    # A 124m-shaped micro-batch: 8 x 2048 rows, 32k vocabulary: 65 rows a chunk on a CPU, 1048 on a GPU.
    budgets = {"cpu": loss_module.DISTILL_CHUNK_ELEMENTS, "cuda": loss_module.DISTILL_CHUNK_ELEMENTS_GPU}
    for device, budget in budgets.items():
        rows = distill_rows(8 * 2048, 32000, device)
        assert rows * 32000 <= budget
        assert rows <= 8 * 2048 // 15


def test_alpha_zero_is_the_plain_cross_entropy() -> None:
    h, w, y, th, tw = _inputs(seed=5)
    ours = _loss_and_grads(linear_distillation_loss, h, w, y, th, tw, temperature=3.0, alpha=0.0)
    plain = _loss_and_grads(lambda h, w, y, *_: linear_cross_entropy(h, w, y), h, w, y, th, tw)
    for a, b in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_a_student_equal_to_its_teacher_has_no_distillation_loss_or_gradient() -> None:
    h, w, y, _, _ = _inputs(seed=6)
    loss, gh, gw = _loss_and_grads(linear_distillation_loss, h, w, y, h, w, temperature=2.0, alpha=1.0)
    assert abs(float(loss)) < 1e-6
    assert float(gh.abs().max()) < 1e-6 and float(gw.abs().max()) < 1e-6


def test_without_grad_only_the_loss_is_computed_and_it_is_the_same() -> None:
    args = _inputs(seed=7)
    with torch.no_grad():
        ours = linear_distillation_loss(*args, temperature=2.0, alpha=0.5)
    torch.testing.assert_close(ours, naive(*args, temperature=2.0, alpha=0.5), rtol=1e-5, atol=1e-6)


def test_upstream_gradient_scales_both_gradients() -> None:
    args = _inputs(seed=8)
    _, gh1, gw1 = _loss_and_grads(linear_distillation_loss, *args, temperature=2.0, alpha=0.5)
    _, gh3, gw3 = _loss_and_grads(linear_distillation_loss, *args, scale=3.0, temperature=2.0, alpha=0.5)
    torch.testing.assert_close(gh3, 3 * gh1)
    torch.testing.assert_close(gw3, 3 * gw1)


def test_under_bf16_autocast_with_a_bf16_teacher_it_stays_close_to_fp32() -> None:
    h, w, y, th, tw = _inputs(seed=9)
    ours = _loss_and_grads(
        linear_distillation_loss, h, w, y, th.bfloat16(), tw.bfloat16(), bf16=True, temperature=2.0, alpha=0.5
    )
    ref = _loss_and_grads(naive, h, w, y, th, tw, temperature=2.0, alpha=0.5)
    assert ours[1].dtype == h.dtype and ours[2].dtype == w.dtype  # grads in the parameters' dtype
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2 * float(b.abs().max()))


def test_all_targets_ignored_gives_zero_loss_and_zero_gradients() -> None:
    h, w, y, th, tw = _inputs(n=10)
    y[:] = -1
    loss, gh, gw = _loss_and_grads(linear_distillation_loss, h, w, y, th, tw, temperature=2.0, alpha=0.5)
    assert float(loss) == 0.0
    assert not gh.any() and not gw.any()


def test_a_teacher_with_another_vocabulary_is_refused() -> None:
    h, w, y, th, tw = _inputs()
    with pytest.raises(ValueError, match="vocabulary"):
        linear_distillation_loss(h, w, y, th, tw[:-1], temperature=2.0, alpha=0.5)


def _tiny(**kw: object) -> GPT:
    shape: dict[str, object] = {"n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 16, "variant": "llama", **kw}
    return GPT(ModelConfig.preset("tiny", vocab_size=64, **shape))  # type: ignore[arg-type]


def test_the_model_takes_the_distillation_path_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    student, teacher = _tiny(), _tiny(n_embd=48, variant="gelu-learned")
    x = torch.randint(0, 64, (2, 16))
    y = torch.randint(0, 64, (2, 16))
    with torch.inference_mode():  # as the loop runs the teacher: its hidden states are inference tensors
        hidden = teacher.hidden_states(x)
    soft = Distillation(hidden.view(-1, 48), teacher.lm_head.weight, temperature=2.0, alpha=0.5)
    _, kd = student(x, y, distill=soft)
    assert kd is not None
    kd.backward()  # inference-mode teacher tensors are fine: nothing of theirs is saved for backward
    assert student.lm_head.weight.grad is not None and teacher.lm_head.weight.grad is None
    h = student.hidden_states(x).view(-1, 32)
    th, tw = hidden.clone().view(-1, 48), teacher.lm_head.weight.detach()
    expected = naive(h, student.lm_head.weight, y.view(-1), th, tw, temperature=2.0, alpha=0.5)
    torch.testing.assert_close(kd.detach(), expected.detach(), rtol=1e-5, atol=1e-6)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the plain path must not touch the distillation loss")

    monkeypatch.setattr(loss_module, "linear_distillation_loss", refuse)
    _, plain = student(x, y)
    assert plain is not None
    logits, _ = student(x)
    assert logits is not None
    torch.testing.assert_close(plain, F.cross_entropy(logits.view(-1, 64), y.view(-1)))
