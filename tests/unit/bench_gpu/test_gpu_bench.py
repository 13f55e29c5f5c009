"""bench.gpu's pieces that need no device: the largest-batch search and the results table."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from bench.gpu.run import GPU_PLAN, SMOKE_PLAN, Report, _selected, render_markdown, sections
from bench.gpu.train_bench import GiB, largest_batch


def memory_model(static_gib: float, per_seq_gib: float, device_gib: float):
    """A batch's peak memory (slightly superlinear, as fragmentation makes it), None past the device."""

    def try_batch(b: int) -> float | None:
        peak = (static_gib + per_seq_gib * b * (1 + b / 20_000)) * GiB
        return peak if peak <= device_gib * GiB else None

    return try_batch


def true_max(try_batch, limit: int = 5000) -> int:
    return max(b for b in range(1, limit) if try_batch(b) is not None)


@pytest.mark.parametrize(
    ("static", "per_seq", "device", "hint"),
    [
        (3.0, 0.45, 139.0, None),  # 124M at T=1024 on an H200, roughly
        (3.0, 0.45, 139.0, 290),  # the same with a hint from an earlier config
        (8.0, 1.1, 139.0, None),  # 355M
        (3.0, 0.45, 100.0, None),  # the memory fit overshoots: the jump fails, bisection recovers
    ],
)
def test_batch_search_lands_within_a_twelfth_under_the_largest_fitting_batch(static, per_seq, device, hint) -> None:
    try_batch = memory_model(static, per_seq, device)
    found = largest_batch(
        try_batch,
        start=8,
        limit=4096,
        granularity=8,
        capacity_bytes=0.94 * 141 * GiB,
        deadline=time.monotonic() + 60,
        hint=hint,
    )
    best = true_max(try_batch)
    assert try_batch(found.batch) is not None
    assert best - max(8, best // 12) - 8 <= found.batch <= best
    assert len(found.probes) <= 8


def test_batch_search_stops_at_the_limit_and_reports_nothing_fitting() -> None:
    always = largest_batch(lambda b: 1.0, start=2, limit=4, granularity=1, capacity_bytes=None, deadline=1e18)
    assert (always.batch, always.stopped) == (4, "limit")
    never = largest_batch(lambda b: None, start=8, limit=64, granularity=1, capacity_bytes=None, deadline=1e18)
    assert (never.batch, never.stopped) == (0, "nothing fits")


def test_the_h200_plan_runs_the_first_config_and_its_compile_first_and_every_deliverable_somewhere() -> None:
    cpu = torch.device("cpu")  # sections are only listed here, never run
    names = [s.name for s in sections(Report(Path("."), {}), GPU_PLAN, cpu)]
    assert names[:3] == ["env", "train:124m-llama-1024", "compile:124m-llama-1024"]
    for needed in (
        "train:124m-gelu-learned-1024",
        "train:124m-llama-2048",
        "train:124m-gelu-learned-2048",
        "train:355m-gelu-learned-1024",
        "dist:124m-llama-1024",
        "infer:124m-llama-1024",
        "compile-hf:124m-llama-1024",
    ):
        assert needed in names
    smoke = [s.name for s in sections(Report(Path("."), {}), SMOKE_PLAN, cpu)]
    assert {n.split(":")[0] for n in smoke} == {"env", "train", "compile", "dist", "infer"}


def test_section_patterns_always_keep_env() -> None:
    assert _selected("env", ["compile:*"], [])
    assert _selected("compile:124m-llama-1024", ["compile:*"], [])
    assert not _selected("train:124m-llama-1024", ["compile:*"], [])
    assert not _selected("compile:124m-llama-1024", [], ["compile*"])


def test_markdown_shows_rows_ratios_and_skipped_sections() -> None:
    data = {
        "meta": {"command": "python -m bench.gpu", "date": "2026-12-01", "budget_s": 330.0, "device": "cuda"},
        "env": {"device_name": "NVIDIA H200", "torch": "2.11.0", "ceilings": {"matmul_bf16_tflops": 790.0}},
        "train": {
            "124m-llama-1024": {
                "rows": [
                    {"impl": "docllm", "mode": "eager", "batch": 256, "tokens_per_s": 500_000.0, "mfu": 0.43},
                    {"impl": "hf", "mode": "eager", "batch": 128, "tokens_per_s": 300_000.0, "mfu": 0.26},
                ],
                "ratios": {"best_vs_best": 500 / 300},
                "search": {"batch": 256, "probes": [[8, True, 3.0]], "seconds": 9.0, "stopped": "converged"},
            }
        },
        "dist": {},
        "inference": {},
        "sections": [{"name": "compile:355m-gelu-learned-1024", "status": "skipped", "seconds": 0.0, "note": "budget"}],
    }
    md = render_markdown(data)
    assert "| 124m-llama-1024 | docllm | eager | 256 | 500,000 | 43.0% |" in md
    assert "1.67×" in md
    assert "| compile:355m-gelu-learned-1024 | skipped | 0 | budget |" in md
