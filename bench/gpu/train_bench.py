"""Training-step measurements: our GPT and the Hugging Face class it exports to, the training loop
itself, and its DDP and FSDP code paths at world size 1.

A *step* is what :func:`docllm.training.loop.train` does per optimizer step with one micro-batch:
bf16 autocast forward to the loss, backward, global-norm clipping at 1.0, the loop's fused AdamW
(:func:`docllm.training.loop._optimizer`), ``zero_grad(set_to_none=True)``. The batch is random
token ids already on the device (no data loading; the loop rows below include it). Timing: warm-up
steps first, then ``steps`` steps between two device synchronisations on the host clock; CUDA
events around each step give the per-step spread. No step reads a value back, so the host queues
ahead as in the loop between its log lines.

The largest micro-batch is found by :func:`largest_batch`: probes of one step each, doubling until
a step runs out of memory (or, from two fitting probes, a jump to the batch their memory
predicts), then bisection, within a time cap.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from docllm.model.config import ModelConfig
from docllm.model.gpt import GPT
from docllm.training.config import TrainConfig
from docllm.training.distributed import DistInfo

# Dense bf16 peak of the H100/H200 datasheet; the MFU denominator.
PEAK_FLOPS = 989e12
GRAD_CLIP = 1.0
GiB = 2**30


def model_config(preset: str, variant: str, block: int, vocab: int) -> ModelConfig:
    return ModelConfig.preset(preset, vocab_size=vocab, variant=variant, block_size=block)  # type: ignore[arg-type]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_oom(e: BaseException) -> bool:
    """An allocation failure: the allocator's own error, or one raised by a library that allocates (cuBLAS)."""
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in text or "ALLOC_FAILED" in text)


def attention_context(device: torch.device, flash: bool) -> contextlib.AbstractContextManager[Any]:
    """On CUDA, SDPA restricted to the flash kernel (an error if a call cannot use it); else nothing."""
    if device.type != "cuda" or not flash:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION])


@dataclass
class Timing:
    batch: int
    tokens_per_s: float
    step_ms_median: float
    step_ms_min: float
    step_ms_max: float
    peak_gib: float
    steps: int
    warmup_s: list[float] = field(default_factory=list)  # wall time of each warm-up step

    def row(self, flops_per_token: int) -> dict[str, Any]:
        d = asdict(self)
        d["mfu"] = flops_per_token * self.tokens_per_s / PEAK_FLOPS
        return d


class Trainer:
    """One model (ours or HF) with the loop's optimizer and a step for any batch size."""

    def __init__(
        self,
        impl: str,
        cfg: ModelConfig,
        device: torch.device,
        *,
        compile_backend: str | None = None,
        flash: bool = True,
    ) -> None:
        from docllm.training.loop import _optimizer

        self.impl = impl
        self.cfg = cfg
        self.device = device
        self.flash = flash
        torch.manual_seed(0)
        with torch.device(device):
            if impl == "docllm":
                self.model: nn.Module = GPT(cfg)
            else:
                from bench.train.run import hf_causal_lm

                self.model = hf_causal_lm(cfg)
        self.model.to(device).train()
        # The loop's optimizer: fused AdamW on CUDA, decay on matrices only; HF gets the same.
        self.opt = _optimizer(self.model, TrainConfig(max_steps=1), device, sharded=False)
        self.run: Callable[..., Any] = self.model
        if compile_backend is not None:
            self.run = torch.compile(self.model, backend=compile_backend)
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def set_batch(self, b: int) -> None:
        self._batch = None
        gen = torch.Generator(device="cpu").manual_seed(b)
        shape = (b, self.cfg.block_size)
        x = torch.randint(0, self.cfg.vocab_size, shape, generator=gen)
        y = torch.randint(0, self.cfg.vocab_size, shape, generator=gen)
        self._batch = (x.to(self.device), y.to(self.device))

    def step(self) -> None:
        assert self._batch is not None
        x, y = self._batch
        with attention_context(self.device, self.flash), torch.autocast(self.device.type, dtype=torch.bfloat16):
            # HF computes its own loss from labels, as its Trainer runs it; no KV cache in training.
            loss = self.run(x, y)[1] if self.impl == "docllm" else self.run(input_ids=x, labels=y, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def try_batch(self, b: int) -> float | None:
        """One step at batch ``b``: its peak memory in bytes, or None when it ran out of memory."""
        ok = False
        try:
            self.set_batch(b)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            self.step()
            sync(self.device)
            ok = True
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
            if not is_oom(e):
                raise
        # Outside the handler: the traceback (and the activations its frames hold) is gone.
        self.opt.zero_grad(set_to_none=True)
        if not ok:
            self._batch = None
            free_memory(self.device)
            return None
        return float(torch.cuda.max_memory_allocated(self.device)) if self.device.type == "cuda" else 0.0

    def check_flash(self) -> str | None:
        """Run one step with SDPA restricted to flash; on refusal fall back to the default dispatch.

        Returns None when flash ran, else why not (the step then uses PyTorch's own choice).
        """
        if self.device.type != "cuda" or not self.flash:
            return None
        try:
            self.step()
            sync(self.device)
            return None
        except RuntimeError as e:
            if is_oom(e):
                raise
            reason = str(e).strip().splitlines()[0][:200]
        self.opt.zero_grad(set_to_none=True)
        self.flash = False
        return f"flash SDPA refused ({reason}); default SDPA dispatch"

    def time(self, b: int, *, warmup: int, steps: int, min_steps: int = 1, target_s: float = 0.0) -> Timing:
        """Tokens/s over timed steps after ``warmup`` steps: as many as fill ``target_s`` at the last
        warm-up step's pace, between ``min_steps`` and ``steps``."""
        self.set_batch(b)
        warm: list[float] = []
        for _ in range(warmup):
            t0 = time.perf_counter()
            self.step()
            sync(self.device)
            warm.append(time.perf_counter() - t0)
        if warm and target_s > 0:
            steps = max(min_steps, min(steps, round(target_s / max(warm[-1], 1e-6))))
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)] if cuda else []
        host: list[float] = []
        sync(self.device)
        t0 = time.perf_counter()
        for i in range(steps):
            if cuda:
                events[i].record()
            else:
                host.append(time.perf_counter())
            self.step()
        if cuda:
            events[steps].record()
        sync(self.device)
        wall = time.perf_counter() - t0
        if cuda:
            per = [events[i].elapsed_time(events[i + 1]) for i in range(steps)]
            peak = torch.cuda.max_memory_allocated(self.device) / GiB
        else:
            host.append(t0 + wall)
            per = [1000 * (host[i + 1] - host[i]) for i in range(steps)]
            peak = 0.0
        return Timing(
            batch=b,
            tokens_per_s=steps * b * self.cfg.block_size / wall,
            step_ms_median=statistics.median(per),
            step_ms_min=min(per),
            step_ms_max=max(per),
            peak_gib=peak,
            steps=steps,
            warmup_s=[round(w, 3) for w in warm],
        )


@dataclass
class Search:
    batch: int  # largest batch that fitted (0: none did)
    probes: list[tuple[int, bool, float]]  # (batch, fitted, peak GiB)
    seconds: float
    stopped: str  # why the search ended


def _round_down(x: float, g: int) -> int:
    return max(g, int(x) // g * g)


def _round_up(x: float, g: int) -> int:
    return -(-int(x) // g) * g


def largest_batch(
    try_batch: Callable[[int], float | None],
    *,
    start: int,
    limit: int,
    granularity: int,
    capacity_bytes: float | None,
    deadline: float,
    hint: int | None = None,
) -> Search:
    """The largest batch ``b <= limit`` for which ``try_batch(b)`` fits, to within about a twelfth.

    Without ``hint``: doubling from ``start``; after two fitting probes, one jump to the batch their
    linear memory fit predicts for ``capacity_bytes``. From a jump or a ``hint`` (a batch expected
    to be near the answer), steps of 15% up while probes fit, or down while none has. Then
    bisection between the largest fitting and the smallest failing batch. Stops at ``deadline``
    (``time.monotonic()``) with the best batch found so far.
    """
    t0 = time.monotonic()
    g = granularity
    probes: list[tuple[int, bool, float]] = []
    fits: list[tuple[int, float]] = []
    good, bad = 0, None
    aimed = hint is not None  # the probes are near a predicted answer: small steps
    b = min(_round_down(hint, g) if hint else start, limit)
    stopped = "converged"
    while True:
        peak = try_batch(b)
        probes.append((b, peak is not None, round((peak or 0.0) / GiB, 2)))
        if peak is not None:
            good = max(good, b)
            fits.append((b, peak))
        else:
            bad = b if bad is None else min(bad, b)
        nxt: int | None
        if bad is None:  # going up
            nxt = _round_up(good * (1.15 if aimed else 2), g)
            if not aimed and len(fits) >= 2 and capacity_bytes:
                (b0, m0), (b1, m1) = fits[-2], fits[-1]
                slope = (m1 - m0) / (b1 - b0) if b1 != b0 else 0.0
                if slope > 0:
                    aimed = True
                    nxt = max(_round_down((capacity_bytes - (m1 - slope * b1)) / slope, g), nxt)
            nxt = min(max(nxt, good + g), limit)
            if nxt <= good:
                stopped, nxt = "limit", None
        elif good == 0:  # going down: nothing fitted yet
            nxt = _round_down(bad * (0.85 if aimed else 0.5), g) if bad > 1 else 0
            nxt = min(nxt, bad - 1)
            if nxt < 1:
                stopped, nxt = "nothing fits", None
        elif bad - good <= max(g, good // 12):
            nxt = None
        else:
            mid = _round_down((good + bad) / 2, g)
            nxt = mid if good < mid < bad else None
        if nxt is None:
            break
        if time.monotonic() >= deadline:
            stopped = "time cap"
            break
        b = nxt
    return Search(batch=good, probes=probes, seconds=time.monotonic() - t0, stopped=stopped)


def capacity(device: torch.device) -> float | None:
    """Bytes a batch may use: most of the device's memory (the rest for fragmentation and workspaces)."""
    if device.type != "cuda":
        return None
    return 0.94 * torch.cuda.get_device_properties(device).total_memory


def time_with_fallback(trainer: Trainer, batch: int, **timing: Any) -> tuple[Timing | None, list[str]]:
    """``trainer.time(batch, **timing)``; on running out of memory, at 3/4 of the batch, down to 1
    (the notes say what happened)."""
    notes: list[str] = []
    b = batch
    while b >= 1:
        oom = False
        try:
            return trainer.time(b, **timing), notes
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
            if not is_oom(e):
                raise
            oom = True
        if oom:
            trainer.opt.zero_grad(set_to_none=True)
            trainer._batch = None
            free_memory(trainer.device)
            notes.append(f"batch {b} ran out of memory")
            b = b * 3 // 4 if b > 1 else 0
    return None, notes


# --- the training loop itself (plain, DDP and FSDP paths) ---------------------------------------


class RandomStream:
    """A :class:`docllm.training.loop.TokenStream` of random sequences (no disk; resumable position)."""

    def __init__(self, block: int, vocab: int, n: int = 4096, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self._data = rng.integers(0, vocab, size=(n, block + 1), dtype=np.int64)
        self._pos = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self._data[self._pos % len(self._data)]
            self._pos += 1

    def state_dict(self) -> dict[str, int]:
        return {"pos": self._pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._pos = state["pos"]

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class OneRankGroup(DistInfo):
    """World size 1 inside an initialised process group, taking the multi-process code paths:
    ``wrap_model`` wraps in DDP or FSDP2 and the loop's collectives run (on one rank)."""

    @property
    def distributed(self) -> bool:
        return True


def loop_tokens_per_s(
    cfg: ModelConfig,
    device: torch.device,
    *,
    batch: int,
    strategy: str,
    info: DistInfo,
    interval: int,
    intervals: int,
) -> dict[str, Any]:
    """``train()`` for ``interval * intervals`` steps (log every ``interval``): tokens/s of all but the
    first interval (warm-up), as the loop itself reports them, and the peak memory."""
    from docllm.training.loop import train

    tcfg = TrainConfig(
        micro_batch_size=batch,
        max_steps=interval * intervals,
        warmup_steps=1,
        log_interval=interval,
        checkpoint_minutes=None,
        precision="bf16",
        compile=False,
        device="cuda" if device.type == "cuda" else "cpu",
        distributed=strategy,
        progress=False,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    outcome = train(cfg, tcfg, RandomStream(cfg.block_size, cfg.vocab_size), dist_info=info)
    wall = time.perf_counter() - t0
    rates = [r.tokens_per_s for r in outcome.history if r.kind == "train" and r.tokens_per_s][1:]
    peak = torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else 0.0
    del outcome
    free_memory(device)
    return {
        "batch": batch,
        "tokens_per_s": statistics.mean(rates) if rates else None,
        "interval_tokens_per_s": rates,
        "steps": interval * intervals,
        "peak_gib": peak,
        "wall_s": wall,
    }
