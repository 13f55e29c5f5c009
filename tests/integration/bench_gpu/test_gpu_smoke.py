"""``python -m bench.gpu --smoke``: the GPU benchmark's every section on the CPU with the tiny preset.

CI has no GPU; this run keeps the script that the GPU machine runs (issue 20) from rotting: the
batch search, our step and the Hugging Face step, the compiled step in a worker process, the
training loop's plain, DDP and FSDP2 paths in a one-rank process group, our engine against
``generate()``, and both result files. Under a minute on an idle 2-core machine.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_smoke_run_measures_every_section_and_writes_both_result_files(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gpu", "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    status = {s["name"]: s["status"] for s in data["sections"]}
    assert status == {
        "env": "ok",
        "train:tiny-llama-64": "ok",
        "compile:tiny-llama-64": "ok",
        "train:tiny-gelu-learned-128": "ok",
        "infer:tiny-llama-128": "ok",
        "dist:tiny-llama-64": "ok",
    }, proc.stderr[-4000:]

    llama = data["train"]["tiny-llama-64"]
    kinds = {(r["impl"], r["mode"]) for r in llama["rows"]}
    assert kinds == {
        ("docllm", "eager"),
        ("docllm", "eager, loss rows 64"),  # the loss's row chunk patched: the plan's what-if row
        ("hf", "eager"),
        ("docllm", "compiled (eager)"),
    }
    assert all(r["tokens_per_s"] > 0 and r["mfu"] >= 0 for r in llama["rows"])
    assert llama["max_batch"] == 4  # the smoke plan's limit: the search doubled up to it
    assert llama["search"]["stopped"] == "limit"
    assert data["train"]["tiny-gelu-learned-128"]["hf_class"] == "GPTBigCodeForCausalLM"

    dist = data["dist"]["tiny-llama-64"]
    for path in ("plain", "ddp", "fsdp"):
        assert dist[path]["tokens_per_s"] > 0, dist[path]
    assert dist["ddp_ratio"] > 0 and dist["fsdp_ratio"] > 0

    inference = data["inference"]
    for engine in ("docllm engine", "HF generate()"):
        # Finite, not positive: a few tokens on a busy machine can time t(n) under t(1) for generate().
        assert math.isfinite(inference[engine]["batch1_tps"]) and inference[engine]["ttft_ms"] > 0
    assert set(inference["ratios"]) == {"batch1", "batchN", "ttft"}

    table = (out / "results.md").read_text(encoding="utf-8")
    assert "| tiny-llama-64 | docllm | eager | 4 |" in table
    assert "| tiny-llama-64 | fsdp |" in table
    assert "| docllm engine |" in table and "| HF generate() |" in table
    assert table.strip() in proc.stdout  # the table is printed last, for the device's output tail
