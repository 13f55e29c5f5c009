from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812  (the PyTorch convention)

from docllm.model.loss import ROWS, linear_cross_entropy


def _inputs(n: int = 3 * ROWS + 5, c: int = 24, v: int = 97, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, c, generator=g)
    w = torch.randn(v, c, generator=g) * 0.3
    y = torch.randint(0, v, (n,), generator=g)
    y[::4] = -1  # ignored positions
    return h, w, y


def _plain(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy((h @ w.t()).float(), y, ignore_index=-1)


def _loss_and_grads(fn, h, w, y, *, scale: float = 1.0, bf16: bool = False, fp16: bool = False):  # type: ignore[no-untyped-def]
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16 if fp16 else torch.bfloat16, enabled=bf16 or fp16):
        loss = fn(h, w, y)
    (loss * scale).backward()
    return loss.detach(), h.grad, w.grad


def _assert_matches_plain(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> None:
    ours = _loss_and_grads(linear_cross_entropy, h, w, y)
    ref = _loss_and_grads(_plain, h, w, y)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_loss_and_gradients_equal_plain_cross_entropy_in_fp32() -> None:
    _assert_matches_plain(*_inputs())


def test_under_bf16_autocast_it_matches_the_plain_autocast_path() -> None:
    h, w, y = _inputs(seed=1)
    ours = _loss_and_grads(linear_cross_entropy, h, w, y, bf16=True)
    ref = _loss_and_grads(_plain, h, w, y, bf16=True)
    assert ours[1].dtype == h.dtype and ours[2].dtype == w.dtype  # grads in the parameters' dtype
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)


def test_upstream_gradient_scales_both_gradients() -> None:
    h, w, y = _inputs(seed=2)
    _, gh1, gw1 = _loss_and_grads(linear_cross_entropy, h, w, y)
    _, gh3, gw3 = _loss_and_grads(linear_cross_entropy, h, w, y, scale=3.0)
    torch.testing.assert_close(gh3, 3 * gh1)
    torch.testing.assert_close(gw3, 3 * gw1)


def test_without_grad_only_the_loss_is_computed_and_it_is_the_same() -> None:
    h, w, y = _inputs(n=600, seed=3)  # several evaluation chunks
    with torch.no_grad():
        ours = linear_cross_entropy(h, w, y)
    torch.testing.assert_close(ours, _plain(h, w, y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, ROWS - 1, ROWS, ROWS + 1])
def test_row_counts_around_the_chunk_size(n: int) -> None:
    h, w, y = _inputs(n=n, seed=4)
    y[0] = 5  # at least one counted target
    _assert_matches_plain(h, w, y)


def test_all_targets_ignored_gives_zero_loss_and_zero_gradients() -> None:
    h, w, y = _inputs(n=10)
    y[:] = -1
    loss, gh, gw = _loss_and_grads(linear_cross_entropy, h, w, y)
    assert float(loss) == 0.0
    assert not gh.any() and not gw.any()


def test_fp16_with_a_loss_scaler_sized_upstream_gradient_stays_finite() -> None:
    h, w, y = _inputs(seed=5)
    h = h * 8  # activations of a few units: times 2**16 they overflow fp16
    _, gh, gw = _loss_and_grads(linear_cross_entropy, h, w, y, scale=2.0**16, fp16=True)
    _, rh, rw = _loss_and_grads(_plain, h, w, y, scale=2.0**16)  # fp32 reference
    assert torch.isfinite(gh).all() and torch.isfinite(gw).all()
    torch.testing.assert_close(gw, rw, rtol=2e-2, atol=2e-2 * float(rw.abs().max()))
    torch.testing.assert_close(gh, rh, rtol=2e-2, atol=2e-2 * float(rh.abs().max()))


def test_a_gpu_takes_large_chunks_and_the_result_does_not_depend_on_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    from docllm.model import loss

    assert loss._rows(torch.device("cpu")) == ROWS
    assert loss._rows(torch.device("cuda")) == loss.ACCELERATOR_ROWS >= 512
    # What a GPU computes with its chunk, checked here with a CPU patched to the same chunk.
    monkeypatch.setattr(loss, "ROWS", 40)
    _assert_matches_plain(*_inputs(n=3 * 40 + 7, seed=6))
