"""Training-step throughput on CPU: docllm's GPT vs the Hugging Face class it exports to.

Same shape, same batch, same fused AdamW, the same autocast precision (bf16 where the CPU has
native bf16), one thread per run unless ``--threads``; eager and ``torch.compile`` on both sides.
The HF model computes its own loss from ``labels`` (as its Trainer runs it); ours returns its loss
from ``model(x, y)`` as our training loop runs it.

Throughput: both sides live in one process and their steps alternate (docllm, HF, HF, docllm, ...),
so a slow spell of a shared machine hits both alike; the speedup is the median of the per-pair
ratios, with quartiles. Peak memory (max RSS): each side alone in a fresh process.

Run::

    .venv/bin/python -m bench.train            # tiny and 124m shapes, llama variant
    .venv/bin/python -m bench.train --quick    # smoke run (tiny only, few steps)
    .venv/bin/python -m bench.train --json --variant gelu-learned
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from docllm.model.config import ModelConfig

IMPLS = ("docllm", "hf")
# PyTorch's switch for transparent huge pages on large CPU allocations; our training job sets it.
HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"
SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 4, "n_head": 4, "n_embd": 256, "vocab": 8000, "T": 128, "B": 8},
    "124m": {"n_layer": 12, "n_head": 12, "n_embd": 768, "vocab": 32000, "T": 128, "B": 4},
}


def hf_causal_lm(cfg: ModelConfig) -> torch.nn.Module:
    """The Hugging Face class our export maps ``cfg`` to: same shape, random init, float32 weights,
    SDPA attention. Built on torch's current default device (``with torch.device(...)``).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from docllm.model.export import hf_config

    raw = hf_config(cfg)
    hf_cfg = AutoConfig.for_model(raw.pop("model_type"), **raw)
    hf_cfg._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32)


def _build(impl: str, shape: str, variant: str, precision: str, compiled: bool) -> tuple[Any, Callable[[], None]]:
    """One side's model and its training step (forward, loss, backward, fused AdamW)."""
    import torch

    from docllm.model.config import ModelConfig
    from docllm.model.gpt import GPT

    s = SHAPES[shape]
    cfg = ModelConfig(
        variant=variant,
        n_layer=s["n_layer"],
        n_head=s["n_head"],
        n_embd=s["n_embd"],
        block_size=s["T"],
        vocab_size=s["vocab"],
    )
    model: torch.nn.Module = GPT(cfg) if impl == "docllm" else hf_causal_lm(cfg)
    model.train()
    # Both sides get the optimizer our loop uses on CPU: torch's fused AdamW kernel.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    run = torch.compile(model) if compiled else model
    x = torch.randint(0, s["vocab"], (s["B"], s["T"]))
    y = torch.randint(0, s["vocab"], (s["B"], s["T"]))
    bf16 = precision == "bf16"

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            # Ours returns the loss from model(x, y) as our loop runs it; HF computes its own loss
            # from labels, as its Trainer does (inside the compiled graph when compiled).
            loss = run(x, y)[1] if impl == "docllm" else run(input_ids=x, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return model, step


def _paired_worker(
    shape: str, variant: str, steps: int, warmup: int, threads: int, precision: str, compiled: bool
) -> dict[str, Any]:
    """Both sides in one process, their steps interleaved: a slow spell of the machine hits both alike."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sides = {impl: _build(impl, shape, variant, precision, compiled) for impl in IMPLS}
    for _, step in sides.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for i in range(steps):
        for impl in IMPLS if i % 2 == 0 else IMPLS[::-1]:
            t0 = time.perf_counter()
            sides[impl][1]()
            times[impl].append(time.perf_counter() - t0)
    tokens = SHAPES[shape]["B"] * SHAPES[shape]["T"]
    ratios = sorted(h / d for d, h in zip(times["docllm"], times["hf"], strict=True))
    return {
        "shape": shape,
        "compiled": compiled,
        "tokens_per_s": {impl: tokens / statistics.median(t) for impl, t in times.items()},
        "step_ms": {impl: [round(1000 * x, 1) for x in t] for impl, t in times.items()},
        "pair_speedups": ratios,
        "params": {impl: sum(p.numel() for p in m.parameters()) for impl, (m, _) in sides.items()},
    }


def _memory_worker(impl: str, shape: str, variant: str, threads: int, precision: str, compiled: bool) -> dict[str, Any]:
    """Peak RSS of one side alone (its own process): two steps, the second reaches steady state."""
    import torch

    torch.set_num_threads(threads)
    _, step = _build(impl, shape, variant, precision, compiled)
    for _ in range(2):
        step()
    return {
        "impl": impl,
        "compiled": compiled,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _subprocess(args: list[str], *, huge_pages: bool) -> dict[str, Any]:
    """A worker in a fresh process, so allocator state, compile caches and peak RSS are its own."""
    env = dict(os.environ)
    env.pop(HUGE_PAGES_ENV, None)
    if huge_pages:
        env[HUGE_PAGES_ENV] = "1"
    cmd = [sys.executable, "-m", "bench.train.run", *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _default_precision() -> str:
    """bf16 where the CPU has native bf16 matmuls (AMX / AVX512-BF16), as the training loop would choose."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "fp32"
    return "bf16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "fp32"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(xs, n=4) if len(xs) > 1 else (xs[0],) * 3
    return q1, q2, q3


def _mode(compiled: bool) -> str:
    return "compiled" if compiled else "eager"


def _row(shape: str, paired: dict[bool, dict[str, Any]], memory: dict[tuple[str, bool], float]) -> dict[str, Any]:
    tps = {(impl, c): r["tokens_per_s"][impl] for c, r in paired.items() for impl in IMPLS}
    best = {impl: max(paired, key=lambda c, i=impl: tps[(i, c)]) for impl in IMPLS}  # type: ignore[misc]
    return {
        "shape": shape,
        "params": paired[next(iter(paired))]["params"],
        "tokens_per_s": {f"{impl} {_mode(c)}": v for (impl, c), v in tps.items()},
        "best": {impl: _mode(c) for impl, c in best.items()},
        "speedup_best_vs_best": tps[("docllm", best["docllm"])] / tps[("hf", best["hf"])],
        # Median and quartiles of the per-pair ratios (adjacent steps of the two sides).
        "speedup_paired": {_mode(c): _quartiles(r["pair_speedups"]) for c, r in paired.items()},
        "peak_rss_mb": {f"{impl} {_mode(c)}": v for (impl, c), v in memory.items()},
        "step_ms": {_mode(c): r["step_ms"] for c, r in paired.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shape only, 4 steps, eager only: a smoke run")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument(
        "--variant",
        default="llama",
        choices=["gelu-learned", "gelu-rotary", "llama"],
        help="architecture; the HF peer is the class it exports to",
    )
    p.add_argument("--shapes", nargs="*", default=None, choices=sorted(SHAPES), help="shapes to run (default: all)")
    p.add_argument("--steps", type=_positive, default=None, help="measured steps per side (default 16, quick 4)")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured steps first (compilation happens here)")
    p.add_argument("--threads", type=_positive, default=1, help="torch intra-op threads")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default=None,
        help="autocast dtype for both sides (default: bf16 if the CPU has native bf16, else fp32)",
    )
    p.add_argument("--no-compile", action="store_true", help="eager only (skip the torch.compile columns)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs (one process per side)")
    p.add_argument(
        "--no-huge-pages",
        action="store_true",
        help=f"run both sides without {HUGE_PAGES_ENV}=1 (the training job sets it; default: both sides get it)",
    )
    p.add_argument("--worker", choices=["paired", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--shape", help=argparse.SUPPRESS)
    p.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    precision = a.precision or _default_precision()
    if a.worker == "paired":
        result = _paired_worker(a.shape, a.variant, a.steps, a.warmup, a.threads, precision, a.compile)
        print(json.dumps(result))
        return 0
    if a.worker == "memory":
        print(json.dumps(_memory_worker(a.impl, a.shape, a.variant, a.threads, precision, a.compile)))
        return 0
    shapes = a.shapes or (["tiny"] if a.quick else list(SHAPES))
    steps = a.steps or (4 if a.quick else 16)
    warmup = 1 if a.quick else a.warmup
    modes = [False] if (a.quick or a.no_compile) else [False, True]
    common = ["--variant", a.variant, "--threads", str(a.threads), "--precision", precision]
    rows = []
    for shape in shapes:
        paired = {
            compiled: _subprocess(
                ["--worker", "paired", "--shape", shape, "--steps", str(steps), "--warmup", str(warmup), *common]
                + (["--compile"] if compiled else []),
                huge_pages=not a.no_huge_pages,
            )
            for compiled in modes
        }
        memory: dict[tuple[str, bool], float] = {}
        if not a.no_memory:
            for compiled in modes:
                for impl in IMPLS:
                    args = ["--worker", "memory", "--impl", impl, "--shape", shape, *common]
                    run = _subprocess(args + (["--compile"] if compiled else []), huge_pages=not a.no_huge_pages)
                    memory[(impl, compiled)] = run["peak_rss_mb"]
        rows.append(_row(shape, paired, memory))
    if a.json:
        settings = {
            "variant": a.variant,
            "precision": precision,
            "threads": a.threads,
            "huge_pages": not a.no_huge_pages,
        }
        print(json.dumps({**settings, "rows": rows}, indent=2))
        return 0
    title = (
        f"training step on CPU ({a.variant}, {precision} autocast, fused AdamW, {a.threads} thread(s), "
        f"{steps} interleaved steps per side, huge pages {'off' if a.no_huge_pages else 'on'})"
    )
    _print_table(rows, modes, title)
    return 0


def _print_table(rows: list[dict[str, Any]], modes: list[bool], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    labels = [_mode(c) for c in modes]
    table = Table(title=title)
    cols = ["shape", "params"]
    for label in labels:
        cols += [f"docllm {label}", f"HF {label}", f"{label}: docllm/HF (IQR)"]
    cols += ["best vs best", "peak MB docllm / HF"]
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        cells = [r["shape"], f"{r['params']['docllm']:,}"]
        for label in labels:
            q1, q2, q3 = r["speedup_paired"][label]
            cells += [
                f"{r['tokens_per_s'][f'docllm {label}']:,.0f}",
                f"{r['tokens_per_s'][f'hf {label}']:,.0f}",
                f"{q2:.2f}x ({q1:.2f}-{q3:.2f})",
            ]
        cells.append(f"{r['speedup_best_vs_best']:.2f}x")
        mem, best = r["peak_rss_mb"], r["best"]
        ours, theirs = f"docllm {best['docllm']}", f"hf {best['hf']}"
        cells.append(f"{mem[ours]:,.0f} / {mem[theirs]:,.0f}" if mem else "-")
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:
        console = Console(width=170)  # a log file: keep rows on one line
    console.print(table)
    console.print(
        "tokens/s at the median step; docllm/HF is the median of per-pair ratios (adjacent steps of the two "
        "sides in one process), IQR its quartiles; same shape, batch, precision and optimizer."
    )


if __name__ == "__main__":
    raise SystemExit(main())
