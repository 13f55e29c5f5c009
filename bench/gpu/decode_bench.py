"""Inference: our engine against ``transformers.generate()`` on the same export.

The export is a seeded random-weight model written by :func:`docllm.model.export.export_hf` (speed
depends on the shape only). Both sides read the same ``model.safetensors``; ours through
:func:`~docllm.model.export.load_hf_export` into :class:`~docllm.serving.engine.LocalEngine`, theirs
through ``AutoModelForCausalLM.from_pretrained`` (:func:`bench.serve.hf.measure`). Greedy, EOS never
ends a run, the same prompt ids.

Figures (the definitions of :mod:`bench.serve.load`):

* time to first token: submit to the first token out of the engine (its prefill and first choice);
  for ``generate()`` a ``max_new_tokens=1`` call;
* batch-1 decode tokens/s: ``(n - 1) / (last token - first token)`` of one request;
* batch-N tokens/s: every token of N identical requests submitted at once over the wall time
  from the first submit to the last token (N prefills included), for ``generate()`` one call
  on a batch of N;
* ``engine step loop``: :func:`~docllm.serving.batch.prefill` and
  :func:`~docllm.serving.batch.decode_step` driven as the engine's scheduler drives them, without
  its queue, threads and detokenizer: the model's share of the engine's time.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from docllm.model.config import ModelConfig
from docllm.model.export import export_hf, load_hf_export
from docllm.model.gpt import GPT
from docllm.ports.inference import GenerationParams
from docllm.serving.batch import SlotCache, decode_step, prefill
from docllm.serving.engine import LocalEngine
from docllm.serving.tokenizer import TextTokenizer


class CountingTokenizer(TextTokenizer):
    """One CJK character per id: every new token is one text delta, and no id decodes to U+FFFD.

    The export of a random-weight model has no tokenizer; the engine needs one only to turn ids
    into text, and this one costs next to nothing, so the figures are the engine's and the model's.
    """

    eos_id = None
    bos_id = None
    add_bos = False

    def encode(self, text: str) -> list[int]:
        return [ord(c) - 0x4E00 for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(0x4E00 + i % 20000) for i in ids)


def write_export(work: Path, cfg: ModelConfig) -> Path:
    out = work / f"export-{cfg.n_layer}x{cfg.n_embd}-{cfg.variant}"
    if not (out / "model.safetensors").exists():
        torch.manual_seed(0)
        export_hf(GPT(cfg).eval(), out, tokenizer_dir=None, card={"name": "bench.gpu random weights"})
    return out


def prompt_ids(n: int, vocab: int) -> list[int]:
    gen = torch.Generator().manual_seed(1234)
    return [int(i) for i in torch.randint(0, vocab, (n,), generator=gen)]


def _one(engine: LocalEngine, ids: list[int], n: int) -> tuple[float, float, float]:
    """(ttft s, decode tokens/s, end) of one request timed token by token."""
    params = GenerationParams(max_tokens=n, temperature=0.0)
    t0 = time.perf_counter()
    handle = engine.submit(ids, params)
    stamps = [time.perf_counter() for _ in handle]
    assert handle.finished is not None and handle.finished.completion_tokens == n, handle.finished
    first, last = stamps[0], stamps[-1]
    return first - t0, (n - 1) / (last - first) if last > first else float("nan"), last


def engine_figures(
    export: Path, ids: list[int], *, device: str, dtype: str, max_tokens: int, batch: int, repeats: int
) -> dict[str, Any]:
    model = load_hf_export(export, device=device)
    with LocalEngine(
        model, CountingTokenizer(), model_name="bench", max_batch=batch, dtype=dtype, request_timeout_s=600
    ) as engine:
        _one(engine, ids, 4)  # warm-up: first kernels, cuBLAS handles
        singles = [_one(engine, ids, max_tokens) for _ in range(repeats)]
        rates: list[float] = []
        params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
        for r in range(repeats + 1):  # the first burst warms up the batched shapes
            t0 = time.perf_counter()
            handles = [engine.submit(ids, params) for _ in range(batch)]
            made = sum(h.result().completion_tokens for h in handles)
            wall = time.perf_counter() - t0
            assert made == batch * max_tokens, made
            if r:
                rates.append(made / wall)
        model = engine.model
    loop = step_loop(model, ids, max_tokens=max_tokens, batches=(1, batch))
    return {
        "ttft_ms": 1000 * statistics.median(s[0] for s in singles),
        "batch1_tps": statistics.median(s[1] for s in singles),
        f"batch{batch}_tps": statistics.median(rates),
        "step_loop": loop,
    }


@torch.inference_mode()
def step_loop(model: GPT, ids: list[int], *, max_tokens: int, batches: tuple[int, ...]) -> dict[str, float]:
    """Decode tokens/s of the engine's model calls alone, at each batch size (prefills excluded).

    Each step builds its token and position tensors from Python lists and reads the chosen tokens
    back, as the engine's scheduler does.
    """
    device = model.lm_head.weight.device
    out: dict[str, float] = {}
    prompt = torch.tensor(ids, dtype=torch.long, device=device)
    for n in batches:
        cache = SlotCache(model, n)
        times = []
        for _ in range(2):  # the first pass warms up
            tokens = [int(prefill(model, cache, row, prompt).argmax()) for row in range(n)]
            positions = [len(ids)] * n
            t0 = time.perf_counter()
            for _ in range(max_tokens - 1):
                tok = torch.tensor(tokens, dtype=torch.long, device=device)
                pos = torch.tensor(positions, dtype=torch.long, device=device)
                logits = decode_step(model, cache, tok, pos, max(positions) + 1)
                tokens = logits.argmax(dim=-1).tolist()
                positions = [p + 1 for p in positions]
            times.append(time.perf_counter() - t0)
        out[f"batch{n}_tps"] = n * (max_tokens - 1) / times[-1]
        del cache
    return out


def hf_figures(
    export: Path, ids: list[int], *, device: str, dtype: torch.dtype, max_tokens: int, batch: int, repeats: int
) -> dict[str, Any]:
    from bench.serve.hf import measure

    f = measure(
        export, ids, max_tokens=max_tokens, batch=batch, repeats=repeats, device=device, dtype=dtype, threads=None
    )
    return {"ttft_ms": f.ttft_ms, "batch1_tps": f.batch1_tps, f"batch{batch}_tps": f.concurrent_tps}
