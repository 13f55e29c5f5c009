"""GPU performance of training and inference in one prepared run (issue 20): ``results.json`` and
``results.md`` in ``--out``, rewritten after every measurement so that a run cut short still
returns what it measured.

Sections, in the order they run (each skipped, and recorded as skipped, when the time left in
``--budget-s`` is under its estimate; each capped in time):

``env``
    versions, the device, and two measured ceilings: a large bf16 matmul (TFLOP/s) and a
    device-to-device copy (TB/s); which SDPA kernel PyTorch picks for causal bf16 attention.
``train:<preset>-<variant>-<T>``
    our training step in eager mode at the largest micro-batch that fits (found here), then the
    Hugging Face class our export maps to at the same shape and batch (or the largest under it
    that fits, with ours again at that batch): tokens/s, MFU, step times, peak memory.
    bf16 autocast, the loop's fused AdamW, clipping, SDPA restricted to the flash kernel.
``compile:…`` / ``compile-hf:…``
    the same step under ``torch.compile`` in a fresh process with a hard time cap: compile time
    (the warm-up steps' time over steady steps, reported apart) and steady tokens/s, graph breaks.
``dist:…``
    :func:`docllm.training.loop.train` itself, eager, plain and through its DDP and FSDP2 code
    paths at world size 1 (a one-rank process group, the project's ``wrap_model``), in a fresh
    process: tokens/s as the loop logs them and the ratios to the plain path.
``infer:…``
    our engine (:class:`~docllm.serving.engine.LocalEngine`, bf16) against ``transformers``
    ``generate()`` (bf16) on the same export: time to first token, batch-1 decode tokens/s,
    batch-32 tokens/s (:mod:`bench.gpu.decode_bench`).

MFU is ``(6N + 12·L·d·T) · tokens/s / 989e12`` (:meth:`ModelConfig.flops_per_token`, N with the
tied head, the H100/H200 dense bf16 datasheet peak); the HF rows use the same FLOPs per token.

Run on the H200 (``bench/gpu/device.sh`` installs the wheels the image lacks, then)::

    python3 -m bench.gpu --out $OUT --budget-s 330

CPU smoke run (CI; the same code paths with the ``tiny`` preset, under a minute)::

    .venv/bin/python -m bench.gpu --smoke --out /tmp/gpu-smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import faulthandler
import fnmatch
import functools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.gpu import train_bench as tb

# --- what to run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSpec:
    preset: str
    variant: str
    block: int

    @property
    def key(self) -> str:
        return f"{self.preset}-{self.variant}-{self.block}"


@dataclass(frozen=True)
class Plan:
    """Sizes and caps of one run: the H200 plan, or the CPU smoke plan with the same code paths."""

    device: str
    vocab: int
    train: tuple[TrainSpec, ...]
    warmup: int  # steps before timing (compiled runs get one more: forward and backward compile)
    steps: int  # timed steps at most
    min_steps: int  # timed steps at least
    target_s: float  # timed steps fill about this long, at the last warm-up step's pace
    start_tokens: int  # first probe of the batch search, in tokens (batch = start_tokens // T)
    batch_limit: int
    search_cap_s: float
    compile_backend: str
    compile_all: bool  # every config compiled (as time allows), or the first one only
    hf_compile: bool
    dist_interval: int  # the loop logs every this many steps; the first interval is warm-up
    dist_intervals: int
    # Our step again with the loss's rows per chunk on this device patched to this (None: not
    # measured): on the GPU, 16 is the chunk before the fix (each chunk costs some twenty launches).
    loss_rows_variant: int | None
    infer: TrainSpec
    prompt_tokens: int
    new_tokens: int
    infer_batch: int
    infer_repeats: int
    infer_dtype: str
    # Seconds: a section starts only with its estimate left; caps bound it (hard for worker processes).
    estimate: dict[str, float] = field(default_factory=dict)
    cap: dict[str, float] = field(default_factory=dict)

    def granularity(self, block: int) -> int:
        return max(1, self.start_tokens // block)

    def timing(self, *, compiled: bool = False) -> dict[str, Any]:
        return {
            "warmup": self.warmup + (1 if compiled else 0),
            "steps": self.steps,
            "min_steps": self.min_steps,
            "target_s": self.target_s,
        }


GPU_PLAN = Plan(
    device="cuda",
    vocab=32000,
    train=(
        TrainSpec("124m", "llama", 1024),
        TrainSpec("124m", "gelu-learned", 1024),
        TrainSpec("355m", "gelu-learned", 1024),
        TrainSpec("124m", "llama", 2048),
        TrainSpec("124m", "gelu-learned", 2048),
    ),
    warmup=1,  # after the search's probes of the same model at the same batch; compiled runs get 2
    steps=10,
    min_steps=3,
    target_s=5.0,
    start_tokens=8192,
    batch_limit=4096,
    search_cap_s=25,
    compile_backend="inductor",
    compile_all=True,
    hf_compile=True,
    dist_interval=4,
    dist_intervals=3,
    loss_rows_variant=16,
    infer=TrainSpec("124m", "llama", 1024),
    prompt_tokens=128,
    new_tokens=256,
    infer_batch=32,
    infer_repeats=3,
    infer_dtype="bfloat16",
    estimate={"env": 5, "train": 40, "train-355m": 60, "compile": 75, "dist": 40, "infer": 35},
    cap={"env": 30, "train": 75, "train-355m": 110, "compile": 150, "dist": 100, "infer": 90},
)

SMOKE_PLAN = Plan(
    device="cpu",
    vocab=2048,
    train=(TrainSpec("tiny", "llama", 64), TrainSpec("tiny", "gelu-learned", 128)),
    warmup=1,
    steps=2,
    min_steps=2,
    target_s=0.0,
    start_tokens=128,
    batch_limit=4,
    search_cap_s=10,
    compile_backend="eager",  # dynamo's tracing without Inductor: the path, not the speed
    compile_all=False,
    hf_compile=False,
    dist_interval=1,
    dist_intervals=2,
    loss_rows_variant=64,
    infer=TrainSpec("tiny", "llama", 128),
    prompt_tokens=16,
    new_tokens=12,
    infer_batch=4,
    infer_repeats=1,
    infer_dtype="float32",
    estimate={"env": 1, "train": 2, "train-355m": 2, "compile": 5, "dist": 5, "infer": 3},
    cap={"env": 20, "train": 30, "train-355m": 30, "compile": 60, "dist": 60, "infer": 30},
)


# --- results -------------------------------------------------------------------------------------


class Report:
    """Everything measured so far; ``save()`` rewrites results.json and results.md."""

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out = out
        self.data: dict[str, Any] = {
            "meta": meta,
            "env": {},
            "train": {},
            "dist": {},
            "inference": {},
            "sections": [],
        }

    @property
    def train(self) -> dict[str, Any]:
        return dict(self.data["train"])

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for name, text in (
            ("results.json", json.dumps(self.data, indent=2, default=str)),
            ("results.md", self.markdown()),
        ):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text + "\n", encoding="utf-8")
            tmp.replace(self.out / name)

    def markdown(self) -> str:
        return render_markdown(self.data)


def _f(x: Any, fmt: str = ",.0f", none: str = "—") -> str:
    return none if x is None else format(x, fmt)


def _x(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def render_markdown(d: dict[str, Any]) -> str:
    meta, env = d["meta"], d["env"]
    lines = [
        f"# bench.gpu — {env.get('device_name', meta.get('device'))}, {meta['date']}",
        "",
        f"`{meta['command']}`; torch {env.get('torch')}, CUDA {env.get('cuda')}, transformers "
        f"{env.get('transformers')}, Python {env.get('python')}; budget {meta['budget_s']:.0f} s.",
    ]
    ceil = env.get("ceilings") or {}
    if ceil:
        lines.append(
            f"Measured ceilings: bf16 matmul {_f(ceil.get('matmul_bf16_tflops'), '.3g')} TFLOP/s, "
            f"copy {_f(ceil.get('copy_tb_s'), '.2f')} TB/s; SDPA picks `{ceil.get('sdpa_choice')}` for causal bf16."
        )
    lines += [
        "",
        "## Training step",
        "",
        "bf16 autocast, the loop's fused AdamW, grad clip 1.0, SDPA flash; random tokens on the device. "
        "MFU = (6N + 12·L·d·T)·tokens/s / 989 TFLOP/s.",
        "",
        "| config | impl | mode | micro-batch | tokens/s | MFU | step ms (min–max) | peak GiB | compile s | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, entry in d["train"].items():
        for r in entry.get("rows", []):
            lo, hi = _f(r.get("step_ms_min"), ".1f"), _f(r.get("step_ms_max"), ".1f")
            spread = f"{_f(r.get('step_ms_median'), '.1f')} ({lo}–{hi})"
            lines.append(
                f"| {key} | {r['impl']} | {r['mode']} | {r.get('batch', '—')} | {_f(r.get('tokens_per_s'))} | "
                f"{_f(100 * r['mfu'] if r.get('mfu') is not None else None, '.1f')}% | {spread} | "
                f"{_f(r.get('peak_gib'), '.1f')} | {_f(r.get('compile_s'), '.0f')} | {r.get('note', '')} |"
            )
    ratios = [(k, e["ratios"]) for k, e in d["train"].items() if e.get("ratios")]
    if ratios:
        lines += [
            "",
            "| config | ours/HF, same batch (eager) | ours best / HF best | compiled/eager (ours) "
            "| loss rows patched / shipped | batch search |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for key, r in ratios:
            search = d["train"][key].get("search", {})
            lines.append(
                f"| {key} | {_x(r.get('same_batch_eager'))} | {_x(r.get('best_vs_best'))} | "
                f"{_x(r.get('compiled_vs_eager'))} | {_x(r.get('loss_rows_variant'))} | "
                f"{search.get('batch', '—')} in "
                f"{_f(search.get('seconds'), '.0f')} s, {len(search.get('probes', []))} probes "
                f"({search.get('stopped', '')}) |"
            )
    if d["dist"]:
        lines += [
            "",
            "## The training loop: plain, DDP and FSDP2 at world size 1 (eager)",
            "",
            "| config | path | micro-batch | tokens/s | ratio to plain | peak GiB | note |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for key, entry in d["dist"].items():
            plain = (entry.get("plain") or {}).get("tokens_per_s")
            for path in ("plain", "ddp", "fsdp"):
                r = entry.get(path) or {}
                tps = r.get("tokens_per_s")
                ratio = tps / plain if tps and plain else None
                lines.append(
                    f"| {key} | {path} | {r.get('batch', '—')} | {_f(tps)} | {_f(ratio, '.3f')} | "
                    f"{_f(r.get('peak_gib'), '.1f')} | {r.get('error', '')} |"
                )
    if d["inference"]:
        inf = d["inference"]
        b = inf.get("batch")
        lines += [
            "",
            f"## Inference: {inf.get('config')} export, {inf.get('dtype')}, prompt {inf.get('prompt_tokens')} tokens, "
            f"{inf.get('new_tokens')} new tokens, greedy",
            "",
            f"| engine | TTFT ms | batch-1 decode tokens/s | batch-{b} tokens/s | step loop batch-1 / batch-{b} |",
            "|---|---:|---:|---:|---|",
        ]
        for name in ("docllm engine", "HF generate()"):
            r = inf.get(name)
            if not r:
                continue
            loop = r.get("step_loop")
            loop_txt = f"{_f(loop.get('batch1_tps'))} / {_f(loop.get(f'batch{b}_tps'))}" if loop else "—"
            lines.append(
                f"| {name} | {_f(r.get('ttft_ms'), '.1f')} | {_f(r.get('batch1_tps'))} | "
                f"{_f(r.get(f'batch{b}_tps'))} | {loop_txt} |"
            )
        if inf.get("ratios"):
            rr = inf["ratios"]
            lines.append("")
            lines.append(
                f"Ours over `generate()`: batch-1 decode {_x(rr.get('batch1'))}, batch-{b} "
                f"{_x(rr.get('batchN'))}, TTFT {_x(rr.get('ttft'))} (theirs/ours)."
            )
    lines += ["", "## Sections", "", "| section | status | seconds | note |", "|---|---|---:|---|"]
    for s in d["sections"]:
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']:.0f} | {s.get('note', '')} |")
    return "\n".join(lines)


# --- sections ------------------------------------------------------------------------------------


_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def env_section(report: Report, plan: Plan, device: torch.device, deadline: float) -> None:
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "cpus": os.cpu_count(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "device_name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "sms": props.multi_processor_count,
            "memory_gib": round(props.total_memory / tb.GiB, 1),
        }
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            env["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    else:
        env["device_name"] = f"CPU ({platform.machine()})"
    report.data["env"] = env
    report.save()
    env["ceilings"] = ceilings(device)


def ceilings(device: torch.device) -> dict[str, Any]:
    """A large bf16 matmul's rate, a large copy's bandwidth, and SDPA's kernel choice, on random data."""
    cuda = device.type == "cuda"
    n = 8192 if cuda else 256
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    tb.sync(device)
    reps = 10
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    tb.sync(device)
    out: dict[str, Any] = {"matmul_bf16_tflops": reps * 2 * n**3 / (time.perf_counter() - t0) / 1e12}
    del a, b
    if cuda:
        x = torch.randn(2**29, device=device)  # 2 GiB fp32
        y = torch.empty_like(x)
        y.copy_(x)
        tb.sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            y.copy_(x)
        tb.sync(device)
        out["copy_tb_s"] = reps * 2 * x.numel() * 4 / (time.perf_counter() - t0) / 1e12
        del x, y
        q = torch.randn(8, 12, 1024, 64, device=device, dtype=torch.bfloat16)
        try:
            from torch.nn.attention import SDPBackend

            out["sdpa_choice"] = SDPBackend(torch._fused_sdp_choice(q, q, q, is_causal=True)).name
        except (AttributeError, RuntimeError, TypeError, ValueError) as e:
            out["sdpa_choice"] = f"unknown ({type(e).__name__})"
    tb.free_memory(device)
    return out


def train_section(report: Report, plan: Plan, spec: TrainSpec, device: torch.device, deadline: float) -> None:
    """Ours eager at the largest batch; HF eager at that batch (or the largest under it); ours at HF's."""
    cfg = tb.model_config(spec.preset, spec.variant, spec.block, plan.vocab)
    fpt = cfg.flops_per_token(spec.block)
    entry: dict[str, Any] = {
        "preset": spec.preset,
        "variant": spec.variant,
        "block": spec.block,
        "vocab": cfg.vocab_size,
        "n_params": cfg.num_params(non_embedding=True) + cfg.vocab_size * cfg.n_embd,
        "flops_per_token": fpt,
        "hf_class": cfg.hf_architecture,
        "rows": [],
        "ratios": {},
    }
    report.data["train"][spec.key] = entry
    start = max(1, plan.start_tokens // spec.block)

    # An earlier config of the same preset fitted about as many tokens per micro-batch.
    hint = next(
        (
            e["max_batch"] * e["block"] // spec.block
            for e in report.train.values()
            if e.get("max_batch") and e["preset"] == spec.preset
        ),
        None,
    )
    ours = tb.Trainer("docllm", cfg, device)
    ours.set_batch(start)
    note = ours.check_flash()
    entry["flash"] = {"docllm": note is None}
    search = tb.largest_batch(
        ours.try_batch,
        start=start,
        limit=plan.batch_limit,
        granularity=plan.granularity(spec.block),
        capacity_bytes=tb.capacity(device),
        deadline=min(deadline, time.monotonic() + plan.search_cap_s),
        hint=hint,
    )
    entry["search"] = {
        "batch": search.batch,
        "probes": search.probes,
        "seconds": search.seconds,
        "stopped": search.stopped,
    }
    probes = len(search.probes)
    log(f"  {spec.key}: largest batch {search.batch} ({probes} probes, {search.seconds:.0f} s, {search.stopped})")
    report.save()
    if search.batch == 0:
        raise RuntimeError("not even the smallest batch fits")
    timing, notes = tb.time_with_fallback(ours, search.batch, **plan.timing())
    if timing is None:
        raise RuntimeError("; ".join(notes))
    entry["max_batch"] = timing.batch
    entry["rows"].append(
        {"impl": "docllm", "mode": "eager", **timing.row(fpt), "note": "; ".join([*notes, note or ""]).strip("; ")}
    )
    log(f"  {spec.key}: docllm eager {timing.tokens_per_s:,.0f} tok/s at batch {timing.batch}")
    report.save()
    from docllm.model import loss as loss_module

    # The chunk size the loss uses on this device: a CPU core's cache, or a GPU's launches.
    attribute = "ROWS" if plan.device == "cpu" else "ACCELERATOR_ROWS"
    shipped = getattr(loss_module, attribute, None)
    rows = plan.loss_rows_variant
    if isinstance(shipped, int) and rows and rows != shipped and time.monotonic() < deadline:
        setattr(loss_module, attribute, rows)  # read at each call: the patch reaches the running model
        try:
            tv, _ = tb.time_with_fallback(ours, timing.batch, **plan.timing())
        finally:
            setattr(loss_module, attribute, shipped)
        if tv is not None:
            mode = f"eager, loss rows {rows}"
            note_v = f"docllm.model.loss.{attribute} patched from {shipped}"
            entry["rows"].append({"impl": "docllm", "mode": mode, **tv.row(fpt), "note": note_v})
            entry["ratios"]["loss_rows_variant"] = tv.tokens_per_s / timing.tokens_per_s
            log(f"  {spec.key}: docllm eager, loss rows {rows}: {tv.tokens_per_s:,.0f} tok/s")
            report.save()
    del ours
    tb.free_memory(device)
    if time.monotonic() > deadline:
        entry["cut"] = "section cap reached before the HF step"
        return

    hf = tb.Trainer("hf", cfg, device)
    hf.set_batch(start)
    hf_note = hf.check_flash()
    entry["flash"]["hf"] = hf_note is None
    hf_timing, hf_notes = tb.time_with_fallback(hf, timing.batch, **plan.timing())
    del hf
    tb.free_memory(device)
    if hf_timing is None:
        raise RuntimeError("HF: " + "; ".join(hf_notes))
    entry["hf_batch"] = hf_timing.batch
    entry["rows"].append(
        {"impl": "hf", "mode": "eager", **hf_timing.row(fpt), "note": "; ".join([*hf_notes, hf_note or ""]).strip("; ")}
    )
    entry["ratios"]["best_vs_best"] = timing.tokens_per_s / hf_timing.tokens_per_s
    log(f"  {spec.key}: HF eager {hf_timing.tokens_per_s:,.0f} tok/s at batch {hf_timing.batch}")
    same = timing
    if hf_timing.batch != timing.batch and time.monotonic() < deadline:
        again = tb.Trainer("docllm", cfg, device, flash=note is None)
        t2, _ = tb.time_with_fallback(again, hf_timing.batch, **plan.timing())
        del again
        tb.free_memory(device)
        if t2 is not None:
            same = t2
            entry["rows"].append({"impl": "docllm", "mode": "eager", **t2.row(fpt), "note": "at HF's batch"})
    if same.batch == hf_timing.batch:
        entry["ratios"]["same_batch_eager"] = same.tokens_per_s / hf_timing.tokens_per_s
    report.save()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """``spec`` in a fresh process (its own compile caches, memory and CUDA context), killed at ``timeout``."""
    cmd = [sys.executable, "-m", "bench.gpu.run", "--worker", json.dumps(spec)]
    # Its own process group (not session): killable whole, and still ended with the command that runs us.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, process_group=0)
    try:
        out, _ = proc.communicate(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and its compile pool: a group this run started
        proc.communicate()
        raise TimeoutError(f"worker killed at its cap of {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"worker exited with {proc.returncode}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def compile_section(
    report: Report, plan: Plan, spec: TrainSpec, impl: str, device: torch.device, deadline: float
) -> None:
    entry = report.data["train"].get(spec.key)
    given = report.data["meta"].get("batches", {}).get(spec.key)  # --batch KEY=OURS[:HF], from an earlier run
    if entry is None:
        entry = report.data["train"][spec.key] = {"rows": [], "ratios": {}, "block": spec.block, "preset": spec.preset}
    if given:
        entry.setdefault("max_batch", given[0])
        entry.setdefault("hf_batch", given[-1])
    if "max_batch" not in entry:
        raise RuntimeError(f"needs the eager section of {spec.key} or --batch {spec.key}=N[:M]")
    batch = entry["max_batch"] if impl == "docllm" else entry.get("hf_batch")
    if batch is None:
        raise RuntimeError("needs the HF eager row (its batch)")
    worker = {
        "kind": "compile",
        "impl": impl,
        "spec": [spec.preset, spec.variant, spec.block],
        "vocab": plan.vocab,
        "device": plan.device,
        "batch": batch,
        "timing": plan.timing(compiled=True),
        "backend": plan.compile_backend,
        "flash": entry.get("flash", {}).get(impl, True),
    }
    tb.free_memory(device)  # the worker gets the whole device
    r = run_worker(worker, deadline - time.monotonic())
    row = {"impl": impl, "mode": f"compiled ({plan.compile_backend})", **r}
    entry["rows"].append(row)
    eager = next(
        (x for x in entry["rows"] if x["impl"] == impl and x["mode"] == "eager" and x["batch"] == r["batch"]), None
    )
    if impl == "docllm" and eager:
        entry["ratios"]["compiled_vs_eager"] = r["tokens_per_s"] / eager["tokens_per_s"]
    shipped = [x for x in entry["rows"] if "loss rows" not in x["mode"]]  # the code as it is, no patch
    best = {i: max((x["tokens_per_s"] for x in shipped if x["impl"] == i), default=None) for i in ("docllm", "hf")}
    if best["docllm"] and best["hf"]:
        entry["ratios"]["best_vs_best"] = best["docllm"] / best["hf"]
    log(f"  {spec.key}: {impl} compiled {r['tokens_per_s']:,.0f} tok/s, compile {r['compile_s']:.0f} s")
    report.save()


def dist_section(report: Report, plan: Plan, spec: TrainSpec, device: torch.device, deadline: float) -> None:
    entry = report.data["train"].get(spec.key) or {}
    g = plan.granularity(spec.block)
    # A ratio, not a peak: a moderate batch (64k tokens on the GPU) keeps three loop runs short, and
    # the paths' fixed costs weigh more there than at the largest batch. Under the largest batch
    # in any case: DDP's buckets and FSDP's unsharded copies need room too.
    batch = min(plan.batch_limit, max(1, 8 * plan.start_tokens // spec.block))
    if entry.get("max_batch"):
        batch = min(batch, max(1, int(0.9 * entry["max_batch"]) // g * g))
    worker = {
        "kind": "dist",
        "spec": [spec.preset, spec.variant, spec.block],
        "vocab": plan.vocab,
        "device": plan.device,
        "batch": batch,
        "interval": plan.dist_interval,
        "intervals": plan.dist_intervals,
    }
    tb.free_memory(device)
    r = run_worker(worker, deadline - time.monotonic())
    plain = (r.get("plain") or {}).get("tokens_per_s")
    for path in ("ddp", "fsdp"):
        tps = (r.get(path) or {}).get("tokens_per_s")
        r[f"{path}_ratio"] = tps / plain if tps and plain else None
    report.data["dist"][spec.key] = r
    log(f"  dist {spec.key}: ddp/plain {r['ddp_ratio']}, fsdp/plain {r['fsdp_ratio']}")
    report.save()


def infer_section(report: Report, plan: Plan, device: torch.device, deadline: float) -> None:
    from bench.gpu import decode_bench as db

    spec = plan.infer
    cfg = tb.model_config(spec.preset, spec.variant, spec.block, plan.vocab)
    inf: dict[str, Any] = {
        "config": spec.key,
        "dtype": plan.infer_dtype,
        "prompt_tokens": plan.prompt_tokens,
        "new_tokens": plan.new_tokens,
        "batch": plan.infer_batch,
    }
    report.data["inference"] = inf
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as work:
        export = db.write_export(Path(work), cfg)
        ids = db.prompt_ids(plan.prompt_tokens, cfg.vocab_size)
        common = {"max_tokens": plan.new_tokens, "batch": plan.infer_batch, "repeats": plan.infer_repeats}
        inf["docllm engine"] = db.engine_figures(export, ids, device=plan.device, dtype=plan.infer_dtype, **common)
        log(f"  engine: {inf['docllm engine']}")
        report.save()
        tb.free_memory(device)
        if time.monotonic() > deadline:
            inf["cut"] = "section cap reached before generate()"
            return
        dtype = torch.bfloat16 if plan.infer_dtype == "bfloat16" else torch.float32
        inf["HF generate()"] = db.hf_figures(export, ids, device=plan.device, dtype=dtype, **common)
        log(f"  generate(): {inf['HF generate()']}")
    ours, theirs = inf["docllm engine"], inf["HF generate()"]
    b = plan.infer_batch
    inf["ratios"] = {
        "batch1": ours["batch1_tps"] / theirs["batch1_tps"],
        "batchN": ours[f"batch{b}_tps"] / theirs[f"batch{b}_tps"],
        "ttft": theirs["ttft_ms"] / ours["ttft_ms"],
    }
    tb.free_memory(device)
    report.save()


# --- workers (fresh processes) -------------------------------------------------------------------


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.cuda.set_device(torch.device(device).index or 0)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    preset, variant, block = spec["spec"]
    cfg = tb.model_config(preset, variant, block, spec["vocab"])
    if spec["kind"] == "compile":
        from torch._dynamo.utils import counters

        counters.clear()
        trainer = tb.Trainer(spec["impl"], cfg, device, compile_backend=spec["backend"], flash=spec["flash"])
        timing, notes = tb.time_with_fallback(trainer, spec["batch"], **spec["timing"])
        if timing is None:
            raise RuntimeError("; ".join(notes))
        steady = timing.step_ms_median / 1000
        breaks = sum(counters["graph_break"].values())
        return {
            **timing.row(cfg.flops_per_token(cfg.block_size)),
            "compile_s": sum(timing.warmup_s) - len(timing.warmup_s) * steady,
            "graph_breaks": breaks,
            "graph_break_reasons": sorted(counters["graph_break"])[:5],
            "unique_graphs": counters["stats"].get("unique_graphs", 0),
            "note": "; ".join([*notes, f"{breaks} graph breaks, {counters['stats'].get('unique_graphs', 0)} graphs"]),
        }
    if spec["kind"] == "dist":
        import torch.distributed as dist

        common = {"batch": spec["batch"], "interval": spec["interval"], "intervals": spec["intervals"]}
        out: dict[str, Any] = {}

        def attempt(path: str, fn: Callable[[], dict[str, Any]]) -> None:
            try:
                out[path] = fn()
            except Exception as e:  # one path failing (FSDP on this build, say) must not lose the others
                traceback.print_exc()
                out[path] = {"batch": spec["batch"], "error": f"{type(e).__name__}: {str(e)[:200]}"}
            print(f"dist {path}: {out[path]}", file=sys.stderr, flush=True)

        plain_info = tb.DistInfo(rank=0, world_size=1, local_rank=0, device=device)
        attempt("plain", lambda: tb.loop_tokens_per_s(cfg, device, strategy="ddp", info=plain_info, **common))
        port = str(_free_port())
        os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": "0", "WORLD_SIZE": "1"})
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, rank=0, world_size=1)
        except Exception as e:  # no process group: both paths unmeasured, the plain row stays
            traceback.print_exc()
            for path in ("ddp", "fsdp"):
                out[path] = {"batch": spec["batch"], "error": f"{backend} init: {type(e).__name__}: {str(e)[:160]}"}
            return out
        try:
            info = tb.OneRankGroup(rank=0, world_size=1, local_rank=0, device=device)
            for path in ("ddp", "fsdp"):
                attempt(path, functools.partial(tb.loop_tokens_per_s, cfg, device, strategy=path, info=info, **common))
        finally:
            dist.destroy_process_group()
        return out
    raise ValueError(f"unknown worker kind {spec['kind']!r}")


# --- main ----------------------------------------------------------------------------------------


@dataclass
class Section:
    name: str
    estimate: float
    cap: float
    fn: Callable[[float], None]  # takes the deadline (time.monotonic())


def sections(report: Report, plan: Plan, device: torch.device) -> list[Section]:
    """In priority order: what matters most runs first, so a short budget loses the least."""
    e, c = plan.estimate, plan.cap

    def train(s: TrainSpec) -> Section:
        kind = "train-355m" if s.preset == "355m" else "train"
        return Section(f"train:{s.key}", e[kind], c[kind], lambda d: train_section(report, plan, s, device, d))

    def comp(s: TrainSpec, impl: str) -> Section:
        name = f"compile{'-hf' if impl == 'hf' else ''}:{s.key}"
        return Section(name, e["compile"], c["compile"], lambda d: compile_section(report, plan, s, impl, device, d))

    first, rest = plan.train[0], plan.train[1:]
    out = [
        Section("env", e["env"], c["env"], lambda d: env_section(report, plan, device, d)),
        train(first),
        comp(first, "docllm"),
    ]
    if rest:
        out.append(train(rest[0]))
    out += [
        Section(f"infer:{plan.infer.key}", e["infer"], c["infer"], lambda d: infer_section(report, plan, device, d)),
        Section(f"dist:{first.key}", e["dist"], c["dist"], lambda d: dist_section(report, plan, first, device, d)),
    ]
    out += [train(s) for s in rest[1:]]
    if plan.hf_compile:
        out.append(comp(first, "hf"))
    if plan.compile_all:
        out += [comp(s, "docllm") for s in rest]
    return out


def _selected(name: str, only: list[str], skip: list[str]) -> bool:
    if any(fnmatch.fnmatch(name, p) for p in skip):
        return False
    return not only or name == "env" or any(fnmatch.fnmatch(name, p) for p in only)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, help="folder for results.json and results.md (created)")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny preset, the same code paths, under a minute")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock budget of the run (default 330; smoke 120)")
    p.add_argument("--only", nargs="*", default=[], help="section name patterns to run (fnmatch), e.g. 'compile:*'")
    p.add_argument("--skip", nargs="*", default=[], help="section name patterns to leave out")
    p.add_argument("--steps", type=int, default=None, help="timed steps per training measurement (at most)")
    p.add_argument(
        "--batch",
        nargs="*",
        default=[],
        metavar="KEY=N[:M]",
        help="micro-batch of ours (N) and HF (M) for compile sections whose train section does not run, "
        "e.g. 124m-llama-1024=288:216 (from an earlier run's results)",
    )
    p.add_argument("--list", action="store_true", help="print the sections in their order and exit")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(json.loads(a.worker)), default=str), flush=True)
        return 0
    plan = SMOKE_PLAN if a.smoke else GPU_PLAN
    if a.steps:
        plan = dataclasses.replace(plan, steps=a.steps, min_steps=min(plan.min_steps, a.steps))
    device = torch.device(plan.device)
    budget = a.budget_s if a.budget_s is not None else (120.0 if a.smoke else 330.0)
    if a.list:
        for s in sections(Report(Path("."), {}), plan, device):
            print(f"{s.name:32s} estimate {s.estimate:4.0f} s, cap {s.cap:4.0f} s")
        return 0
    if a.out is None:
        p.error("--out is required")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device: run with --smoke for the CPU path")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as the training loop sets it (TrainConfig.tf32)
        torch.backends.cudnn.allow_tf32 = True
    start = time.monotonic()
    end = start + budget
    # Whatever hangs (a collective, a compile), the run ends, saying where it was.
    faulthandler.dump_traceback_later(budget + 60, exit=True)
    meta = {
        "command": "python -m bench.gpu " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": plan.device,
        "budget_s": budget,
        "smoke": a.smoke,
        "batches": {k: [int(x) for x in v.split(":")] for k, v in (b.split("=", 1) for b in a.batch)},
    }
    report = Report(a.out, meta)
    report.save()
    for sec in sections(report, plan, device):
        if not _selected(sec.name, a.only, a.skip):
            continue
        left = end - time.monotonic()
        if left < sec.estimate:
            note = f"needs ~{sec.estimate:.0f} s, {max(left, 0):.0f} s left"
            report.data["sections"].append({"name": sec.name, "status": "skipped", "seconds": 0.0, "note": note})
            log(f"{sec.name}: skipped ({note})")
            report.save()
            continue
        log(f"{sec.name} (cap {min(sec.cap, left):.0f} s)")
        t0 = time.monotonic()
        status, note = "ok", ""
        try:
            sec.fn(min(t0 + sec.cap, end))
        except TimeoutError as e:
            status, note = "timeout", str(e)
        except Exception as e:  # a failed section is recorded; the next one runs
            traceback.print_exc()
            status, note = (
                "failed",
                f"{type(e).__name__}: {str(e).strip().splitlines()[0][:240] if str(e).strip() else ''}",
            )
        tb.free_memory(device)
        report.data["sections"].append(
            {"name": sec.name, "status": status, "seconds": time.monotonic() - t0, "note": note}
        )
        log(f"{sec.name}: {status} in {time.monotonic() - t0:.0f} s {note}")
        report.save()
    faulthandler.cancel_dump_traceback_later()
    report.data["meta"]["wall_s"] = time.monotonic() - start
    report.save()
    print(report.markdown(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
