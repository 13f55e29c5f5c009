"""Hugging Face ``generate()`` on the same export: the baseline of the issue's goals.

``AutoModelForCausalLM`` loads the export in float32 (as our engine serves it on a CPU) in this
process with 2 torch threads, or, for the GPU benchmark (:mod:`bench.gpu`), in bfloat16 on the GPU.
EOS is switched off in the generation config so that every run makes exactly ``max_tokens`` tokens
(the servers get ``ignore_eos`` or never meet EOS with random weights). Time to first token is a
``max_new_tokens=1`` call; decode tokens/s is ``(n - 1) / (t(n) - t(1))`` and the batch's aggregate
is every token over the whole call, prefill included: the same definitions as the servers'
(:mod:`bench.serve.load`).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.serve.load import DecodeFigures


def measure(
    export: Path,
    prompt_ids: list[int],
    *,
    max_tokens: int,
    batch: int,
    repeats: int,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    threads: int | None = 2,
) -> DecodeFigures:
    from transformers import AutoModelForCausalLM

    if threads is not None:
        torch.set_num_threads(threads)
    loaded: Any = AutoModelForCausalLM.from_pretrained(str(export), dtype=dtype)
    model = loaded.to(device).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0

    def run(ids: torch.Tensor, n: int) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False
            )
        assert out.shape[1] == ids.shape[1] + n
        if out.is_cuda:
            torch.cuda.synchronize(out.device)
        return time.perf_counter() - t0

    one = torch.tensor([prompt_ids], device=device)
    many = one.repeat(batch, 1)
    run(one, 4)  # warm-up
    first = [run(one, 1) for _ in range(repeats)]
    t1 = statistics.median(first)
    single = [(max_tokens - 1) / (run(one, max_tokens) - t1) for _ in range(repeats)]
    batched = [batch * max_tokens / run(many, max_tokens) for _ in range(repeats)]
    return DecodeFigures(
        ttft_ms=t1 * 1000,
        batch1_tps=statistics.median(single),
        concurrent_tps=statistics.median(batched),
        tokens_per_request=float(max_tokens),
    )
