from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812  (the PyTorch convention)

from docllm.model.attention import SHORT_CONTEXT, causal_attention


def _qkv(t: int, *, b: int = 2, nh: int = 3, hs: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, nh, t, hs, generator=g) * 2).to(dtype).requires_grad_() for _ in range(3)]


def _out_and_grads(fn, q, k, v, grad):  # type: ignore[no-untyped-def]
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = fn(q, k, v)
    out.backward(grad)
    return [out.detach(), q.grad, k.grad, v.grad]


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


@pytest.mark.parametrize("t", [1, 7, 64, SHORT_CONTEXT])
def test_short_context_training_path_equals_sdpa_in_fp32(t: int) -> None:
    q, k, v = _qkv(t)
    grad = torch.randn_like(q)
    ours = _out_and_grads(causal_attention, q, k, v, grad)
    ref = _out_and_grads(_sdpa, q, k, v, grad)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_short_context_training_takes_the_textbook_path_and_the_rest_goes_to_sdpa() -> None:
    q, k, v = _qkv(16)
    assert type(causal_attention(q, k, v).grad_fn).__name__ == "_ShortCausalAttentionBackward"
    q, k, v = _qkv(SHORT_CONTEXT + 1, b=1, nh=1)
    assert type(causal_attention(q, k, v).grad_fn).__name__ != "_ShortCausalAttentionBackward"
    q, k, v = _qkv(16)
    torch.manual_seed(0)
    assert type(causal_attention(q, k, v, dropout_p=0.1).grad_fn).__name__ != "_ShortCausalAttentionBackward"
    with torch.no_grad():
        torch.testing.assert_close(causal_attention(q, k, v), _sdpa(q, k, v))


def test_bf16_error_against_an_fp64_reference_is_close_to_the_flash_kernels() -> None:
    q, k, v = _qkv(128, b=2, nh=4, hs=64, dtype=torch.float64)
    grad = torch.randn_like(q)
    ref = _out_and_grads(_sdpa, q, k, v, grad)

    def rel_errors(fn) -> list[float]:  # type: ignore[no-untyped-def]
        low = _out_and_grads(fn, *(x.to(torch.bfloat16) for x in (q, k, v, grad)))
        return [float((a.double() - b).norm() / b.norm()) for a, b in zip(low, ref, strict=True)]

    ours, flash = rel_errors(causal_attention), rel_errors(_sdpa)
    for mine, theirs in zip(ours, flash, strict=True):
        assert mine < 2e-2
        assert mine < 2.5 * theirs


def test_under_autocast_mixed_input_dtypes_meet_in_the_autocast_dtype() -> None:
    # Rotary q and k come out of the fp32 tables in fp32 while v is bf16, as in the model.
    q, k, v = _qkv(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = causal_attention(q, k, v.detach().to(torch.bfloat16).requires_grad_())
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.float32 and torch.isfinite(q.grad).all()


def test_compiled_training_step_gives_the_eager_gradients() -> None:
    q, k, v = _qkv(32)
    grad = torch.randn_like(q)
    compiled = torch.compile(causal_attention, dynamic=False)
    for a, b in zip(
        _out_and_grads(compiled, q, k, v, grad), _out_and_grads(causal_attention, q, k, v, grad), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
