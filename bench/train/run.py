"""Training-step throughput on CPU: docllm's GPT vs the Hugging Face class it exports to.

Same shape, same batch, same fused AdamW, the same autocast precision (bf16 where the CPU has
native bf16), one thread per run unless ``--threads``; eager and ``torch.compile`` on both sides.
The HF model computes its own loss from ``labels`` (as its Trainer runs it); ours returns its loss
from ``model(x, y)`` as our training loop runs it. Each measurement runs in a fresh subprocess so
peak memory (max RSS) is its own; ``--rounds`` runs per configuration, alternating, medians shown.

Run::

    .venv/bin/python -m bench.train            # tiny and 124m shapes, llama variant
    .venv/bin/python -m bench.train --quick    # smoke run (tiny only, few steps)
    .venv/bin/python -m bench.train --json --variant gelu-learned
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 4, "n_head": 4, "n_embd": 256, "vocab": 8000, "T": 128, "B": 8},
    "124m": {"n_layer": 12, "n_head": 12, "n_embd": 768, "vocab": 32000, "T": 128, "B": 4},
}


def _worker(
    impl: str,
    shape: str,
    variant: str,
    steps: int,
    warmup: int,
    threads: int,
    precision: str = "fp32",
    compiled: bool = False,
) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
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
    model: torch.nn.Module
    if impl == "docllm":
        model = GPT(cfg)

        def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return model(x, y)[1]
    else:
        from transformers import AutoConfig, AutoModelForCausalLM

        from docllm.model.export import hf_config

        raw = hf_config(cfg)
        hf_cfg = AutoConfig.for_model(raw.pop("model_type"), **raw)
        hf_cfg._attn_implementation = "sdpa"
        model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32)

        # HF computes its own loss from labels, as its Trainer does (and inside the compiled graph).
        def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return model(input_ids=x, labels=y).loss

    model.train()
    # Both sides get the optimizer our loop uses on CPU: torch's fused AdamW kernel.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    if compiled:
        compiled_model = torch.compile(model)
        if impl == "docllm":

            def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return compiled_model(x, y)[1]
        else:

            def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return compiled_model(input_ids=x, labels=y).loss

    x = torch.randint(0, s["vocab"], (s["B"], s["T"]))
    y = torch.randint(0, s["vocab"], (s["B"], s["T"]))

    bf16 = precision == "bf16"

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_of(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    return {
        "impl": impl,
        "compiled": compiled,
        "precision": precision,
        "shape": shape,
        "variant": variant,
        "steps": steps,
        "tokens_per_s": steps * s["B"] * s["T"] / dt,
        "step_ms": 1000 * dt / steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": sum(p.numel() for p in model.parameters()),
    }


def _measure(
    impl: str, shape: str, variant: str, steps: int, warmup: int, threads: int, precision: str, compiled: bool
) -> dict[str, Any]:
    """One configuration in a fresh process, so allocator state and compile caches do not leak."""
    cmd = [
        sys.executable,
        "-m",
        "bench.train.run",
        "--worker",
        impl,
        "--shape",
        shape,
        "--variant",
        variant,
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
        "--threads",
        str(threads),
        "--precision",
        precision,
    ]
    if compiled:
        cmd.append("--compile")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median tokens/s, plus every round's figure."""
    ordered = sorted(runs, key=lambda r: r["tokens_per_s"])
    return {**ordered[len(ordered) // 2], "rounds_tokens_per_s": [r["tokens_per_s"] for r in runs]}


def _default_precision() -> str:
    """bf16 where the CPU has native bf16 matmuls (AMX / AVX512-BF16), as the training loop would choose."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "fp32"
    return "bf16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "fp32"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shape only, 3 steps, eager only: a smoke run")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument(
        "--variant",
        default="llama",
        choices=["gelu-learned", "gelu-rotary", "llama"],
        help="architecture; the HF peer is the class it exports to",
    )
    p.add_argument("--shapes", nargs="*", default=None, help=f"subset of {sorted(SHAPES)}")
    p.add_argument("--steps", type=int, default=None, help="measured steps per run (default 8, quick 3)")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured steps first (compilation happens here)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--rounds", type=int, default=3, help="runs per configuration (median reported; quick: 1)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default=None,
        help="autocast dtype for both sides (default: bf16 if the CPU has native bf16, else fp32)",
    )
    p.add_argument("--no-compile", action="store_true", help="eager only (skip the torch.compile columns)")
    p.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=["docllm", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--shape", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    precision = a.precision or _default_precision()
    if a.worker:
        print(json.dumps(_worker(a.worker, a.shape, a.variant, a.steps, a.warmup, a.threads, precision, a.compile)))
        return 0
    shapes = a.shapes or (["tiny"] if a.quick else list(SHAPES))
    steps = a.steps or (3 if a.quick else 8)
    warmup = 1 if a.quick else a.warmup
    modes = [False] if (a.quick or a.no_compile) else [False, True]
    if a.quick:
        a.rounds = 1
    rows = []
    for shape in shapes:
        # Fresh process per run; configurations alternate within a round and the order flips
        # each round, so drift in machine load hits every side alike. Medians per configuration.
        configs = [(impl, compiled) for impl in ("docllm", "hf") for compiled in modes]
        samples: dict[tuple[str, bool], list[dict[str, Any]]] = {c: [] for c in configs}
        for rnd in range(a.rounds):
            for impl, compiled in configs if rnd % 2 == 0 else configs[::-1]:
                run = _measure(impl, shape, a.variant, steps, warmup, a.threads, precision, compiled)
                samples[(impl, compiled)].append(run)
        runs = {c: _median_run(v) for c, v in samples.items()}
        ours = max((r for (i, _), r in runs.items() if i == "docllm"), key=lambda r: r["tokens_per_s"])
        theirs = max((r for (i, _), r in runs.items() if i == "hf"), key=lambda r: r["tokens_per_s"])
        rows.append(
            {
                "shape": shape,
                "variant": a.variant,
                "precision": precision,
                "runs": [{"impl": i, "compiled": c, **r} for (i, c), r in runs.items()],
                "best_docllm": ours,
                "best_hf": theirs,
                "speedup_best_vs_best": ours["tokens_per_s"] / theirs["tokens_per_s"],
                "speedup_eager_vs_eager": runs[("docllm", False)]["tokens_per_s"] / runs[("hf", False)]["tokens_per_s"],
                "speedup_compiled_vs_compiled": (
                    runs[("docllm", True)]["tokens_per_s"] / runs[("hf", True)]["tokens_per_s"]
                    if True in modes
                    else None
                ),
            }
        )
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    title = (
        f"training step on CPU ({a.variant}, {precision} autocast, fused AdamW, {a.threads} thread(s), {steps} steps)"
    )
    table = Table(title=title)
    cols = ["shape", "params", "docllm eager", "HF eager"]
    if True in modes:
        cols += ["docllm compiled", "HF compiled"]
    cols += ["best vs best", "eager vs eager"]
    if True in modes:
        cols += ["compiled vs compiled"]
    cols += ["docllm peak MB", "HF peak MB"]
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        by = {(x["impl"], x["compiled"]): x for x in r["runs"]}
        cells = [
            r["shape"],
            f"{r['best_docllm']['params']:,}",
            f"{by[('docllm', False)]['tokens_per_s']:,.0f}",
            f"{by[('hf', False)]['tokens_per_s']:,.0f}",
        ]
        if True in modes:
            cells += [f"{by[('docllm', True)]['tokens_per_s']:,.0f}", f"{by[('hf', True)]['tokens_per_s']:,.0f}"]
        cells += [
            f"{r['speedup_best_vs_best']:.2f}x",
            f"{r['speedup_eager_vs_eager']:.2f}x",
        ]
        if True in modes:
            cells += [f"{r['speedup_compiled_vs_compiled']:.2f}x"]
        cells += [
            f"{r['best_docllm']['peak_rss_mb']:,.0f}",
            f"{r['best_hf']['peak_rss_mb']:,.0f}",
        ]
        table.add_row(*cells)
    Console().print(table)
    Console().print(
        f"tokens/s, median of {a.rounds} round(s); speedups are docllm / HF at the same shape, batch, "
        "precision and optimizer."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
