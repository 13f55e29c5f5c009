"""Training-step throughput on CPU: docllm's GPT vs the Hugging Face class it exports to.

Same shape, same batch, same AdamW, fp32, one thread per run unless ``--threads``.
Each measurement runs in a fresh subprocess so peak memory (max RSS) is its own.

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
from typing import Any

SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 4, "n_head": 4, "n_embd": 256, "vocab": 8000, "T": 128, "B": 8},
    "124m": {"n_layer": 12, "n_head": 12, "n_embd": 768, "vocab": 32000, "T": 128, "B": 4},
}


def _worker(impl: str, shape: str, variant: str, steps: int, warmup: int, threads: int) -> dict[str, Any]:
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

        def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logits = model(input_ids=x).logits
            return torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, s["vocab"], (s["B"], s["T"]))
    y = torch.randint(0, s["vocab"], (s["B"], s["T"]))

    def step() -> None:
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
        "shape": shape,
        "variant": variant,
        "steps": steps,
        "tokens_per_s": steps * s["B"] * s["T"] / dt,
        "step_ms": 1000 * dt / steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": sum(p.numel() for p in model.parameters()),
    }


def _measure(impl: str, shape: str, variant: str, steps: int, warmup: int, threads: int) -> dict[str, Any]:
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
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shape only, 3 steps: a smoke run")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument(
        "--variant",
        default="llama",
        choices=["gelu-learned", "gelu-rotary", "llama"],
        help="architecture; the HF peer is the class it exports to",
    )
    p.add_argument("--shapes", nargs="*", default=None, help=f"subset of {sorted(SHAPES)}")
    p.add_argument("--steps", type=int, default=None, help="measured steps per run (default 10, quick 3)")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--worker", choices=["docllm", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--shape", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(a.worker, a.shape, a.variant, a.steps, a.warmup, a.threads)))
        return 0
    shapes = a.shapes or (["tiny"] if a.quick else list(SHAPES))
    steps = a.steps or (3 if a.quick else 10)
    warmup = 1 if a.quick else a.warmup
    rows = []
    for shape in shapes:
        ours = _measure("docllm", shape, a.variant, steps, warmup, a.threads)
        theirs = _measure("hf", shape, a.variant, steps, warmup, a.threads)
        rows.append(
            {
                "shape": shape,
                "variant": a.variant,
                "docllm": ours,
                "hf": theirs,
                "speedup": ours["tokens_per_s"] / theirs["tokens_per_s"],
            }
        )
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"training step on CPU ({a.variant}, fp32, AdamW, {a.threads} thread(s), {steps} steps)")
    for col in ("shape", "params", "docllm tok/s", "HF tok/s", "speedup", "docllm peak MB", "HF peak MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["shape"],
            f"{r['docllm']['params']:,}",
            f"{r['docllm']['tokens_per_s']:,.0f}",
            f"{r['hf']['tokens_per_s']:,.0f}",
            f"{r['speedup']:.2f}x",
            f"{r['docllm']['peak_rss_mb']:,.0f}",
            f"{r['hf']['peak_rss_mb']:,.0f}",
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
