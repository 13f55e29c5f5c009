"""The training loop, in one file readable top to bottom (after nanoGPT's ``train.py``).

AdamW (fused kernel on CUDA and CPU), linear warmup then cosine decay, gradient accumulation,
global-norm clipping, bf16 autocast (fp16 with a GradScaler), optional TF32 and
``torch.compile``, periodic validation, a budget in steps, tokens, epochs or
minutes, deterministic seeding, DDP or FSDP2 under torchrun, periodic and final
checkpoints with exact resume, a clean stop on SIGTERM (spot interruption), and
logit distillation from a frozen teacher (``cfg.distill`` with ``teacher=``).

The data are token streams (:class:`TokenStream`, implemented by
``docllm.dataset.shards.PackedSequenceReader``): each item is one sequence of
``block_size + 1`` token ids; inputs are the first ``block_size``, targets the
last. A stream's ``state_dict`` must describe the position after the items it
has yielded, so that a checkpoint resumes on the next unseen sequence.

Example (a tiny CPU run, a few seconds)::

    from docllm.model.config import ModelConfig
    from docllm.training.config import TrainConfig
    from docllm.training.loop import train

    mcfg = ModelConfig.preset("tiny", vocab_size=512, block_size=64)
    outcome = train(mcfg, TrainConfig(max_steps=20, micro_batch_size=4, warmup_steps=2),
                    train_stream, val_stream, checkpoint_dir=Path("/tmp/ckpt"))
    print(outcome.result.val_loss)
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.distributed as dist

from docllm.model.config import ModelConfig
from docllm.model.gpt import GPT
from docllm.model.loss import Distillation
from docllm.ports.metrics import MetricsSink
from docllm.training.checkpoint import (
    InitWeights,
    check_init_config,
    find_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from docllm.training.config import TrainConfig
from docllm.training.distill import check_teacher, teacher_dtype
from docllm.training.distributed import DistInfo, all_reduce_mean, any_rank, init_distributed, wrap_model
from docllm.training.exceptions import CheckpointError, TrainingConfigError, TrainingError

# Dense bf16 peak per GPU (no sparsity), from the vendors' datasheets; unknown GPUs report no MFU.
PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 125e12,  # A10 datasheet figure; the AWS A10G variant may clock lower (not verified)
}


class TokenStream(Protocol):
    """Sequences of ``block_size + 1`` token ids, infinite over epochs, with a resumable position."""

    def __iter__(self) -> Iterator[np.ndarray]: ...
    def state_dict(self) -> dict[str, int]: ...
    def load_state_dict(self, state: dict[str, int]) -> None: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class LogPoint:
    """One point of a training history (``history.jsonl``, which the evaluation report plots): a
    training loss every ``log_interval`` steps or a validation loss. The LoRA job logs these."""

    step: int
    kind: Literal["train", "val"]
    loss: float
    lr: float
    tokens_seen: int
    elapsed_s: float


@dataclass(frozen=True)
class LogRecord(LogPoint):
    """A :class:`LogPoint` of the pretraining loop, with its throughput."""

    tokens_per_s: float | None = None
    mfu: float | None = None


Callback = Callable[[LogRecord], None]


class MetricsCallback:
    """Forwards log records to a :class:`docllm.ports.metrics.MetricsSink` (CloudWatch, SQLite)."""

    def __init__(self, sink: MetricsSink, dimensions: dict[str, str] | None = None) -> None:
        self.sink = sink
        self.dimensions = dimensions or {}

    def __call__(self, record: LogRecord) -> None:
        dims = self.dimensions
        if record.kind == "val":
            self.sink.put("ValidationLoss", record.loss, unit="None", dimensions=dims)
            self.sink.flush()
            return
        self.sink.put("TrainLoss", record.loss, unit="None", dimensions=dims)
        self.sink.put("LearningRate", record.lr, unit="None", dimensions=dims)
        if record.tokens_per_s is not None:
            self.sink.put("TokensPerSecond", record.tokens_per_s, unit="Count/Second", dimensions=dims)
        if record.mfu is not None:
            self.sink.put("MFU", 100.0 * record.mfu, unit="Percent", dimensions=dims)


class StopFlag:
    """Set by SIGTERM (spot interruption, ``docker stop``); the loop checkpoints and returns."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def install(self, signals: Sequence[signal.Signals] = (signal.SIGTERM,)) -> StopFlag:
        """Route ``signals`` to this flag (main thread only); returns self."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self._set = True

        for s in signals:
            signal.signal(s, handler)
        return self


@dataclass(frozen=True)
class TrainResult:
    steps: int
    tokens_seen: int
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    elapsed_s: float
    tokens_per_s: float
    interrupted: bool
    checkpoint: str | None
    resumed_from_step: int | None
    world_size: int
    device: str
    n_params: int


@dataclass
class TrainOutcome:
    result: TrainResult
    model: GPT | None  # the trained model on rank 0 (unsharded); None on other ranks
    history: list[LogRecord]


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from the peak to ``min_lr_ratio``·peak.

    ``progress`` is the fraction of the budget used (steps, tokens or time), in [0, 1].
    """
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    p = min(max(progress, 0.0), 1.0)
    floor = cfg.learning_rate * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.learning_rate - floor) * (1.0 + math.cos(math.pi * p))


def total_steps(cfg: TrainConfig, *, block_size: int, world_size: int, sequences_per_epoch: int) -> int | None:
    """Steps the budget allows (None when only time limits it)."""
    limits: list[int] = []
    if cfg.max_steps is not None:
        limits.append(cfg.max_steps)
    if cfg.max_tokens is not None:
        limits.append(math.ceil(cfg.max_tokens / cfg.tokens_per_step(block_size=block_size, world_size=world_size)))
    if cfg.max_epochs is not None:
        per_epoch = sequences_per_epoch // (cfg.micro_batch_size * cfg.grad_accum_steps)
        if per_epoch < 1:
            raise TrainingConfigError(
                "micro_batch_size",
                f"one step needs {cfg.micro_batch_size * cfg.grad_accum_steps} sequences per rank but an "
                f"epoch has {sequences_per_epoch}",
            )
        limits.append(math.ceil(cfg.max_epochs * per_epoch))
    return min(limits) if limits else None


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_FLOPS.items():
        if key in name:
            return value
    return None


def _cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 matmuls run in hardware (1.75x fp32 measured on AMX); elsewhere
    oneDNN emulates bf16 and it is slower than fp32, so ``auto`` keeps fp32 there."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.precision == "fp32":
        return None
    if cfg.precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and _cpu_has_native_bf16():
            return torch.bfloat16
        return None
    return torch.bfloat16 if cfg.precision == "bf16" else torch.float16


def _next_batch(
    it: Iterator[np.ndarray], n: int, block_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    seqs = [next(it) for _ in range(n)]
    for s in seqs:
        if s.shape != (block_size + 1,):
            raise TrainingError(f"stream yielded a sequence of shape {s.shape}, expected ({block_size + 1},)")
    batch = torch.from_numpy(np.stack(seqs).astype(np.int64))  # (B, T+1)
    x, y = batch[:, :-1], batch[:, 1:]  # (B, T) each
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.contiguous(), y.contiguous()


def _optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device, *, sharded: bool) -> torch.optim.AdamW:
    """AdamW; decay on matrices (weights, embeddings), not on norms and biases.

    The fused kernel (one pass per parameter) on CUDA, and on CPU except for FSDP's sharded DTensor
    parameters: the fused CPU kernel under FSDP is not exercised by our tests, so foreach stays there.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda" or (device.type == "cpu" and not sharded)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=fused)


class _State:
    """Counters saved with every checkpoint."""

    def __init__(self) -> None:
        self.step = 0
        self.tokens_seen = 0
        self.elapsed_s = 0.0
        self.best_val: float | None = None
        self.last_val: float | None = None
        self.last_train: float | None = None


def train(
    model_config: ModelConfig,
    cfg: TrainConfig,
    train_data: TokenStream,
    val_data: TokenStream | None = None,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = True,
    metrics: MetricsSink | None = None,
    metric_dimensions: dict[str, str] | None = None,
    callbacks: Sequence[Callback] = (),
    stop: StopFlag | None = None,
    dist_info: DistInfo | None = None,
    teacher: GPT | None = None,
    init: InitWeights | None = None,
) -> TrainOutcome:
    """Train a :class:`GPT` from scratch, or resume from ``checkpoint_dir/ckpt.pt`` when present.

    With ``init`` (a continued run, :func:`docllm.training.checkpoint.load_init_weights`) the model
    starts from those weights instead of a random init; only the weights: the optimizer, step, schedule
    and data order are this run's own. A checkpoint of this run still wins (a restarted continued
    run resumes where it stopped, not from its initial weights again).

    Returns the trained model (rank 0), the result and the logged history. When
    ``stop`` is set (SIGTERM), saves a checkpoint and returns with
    ``result.interrupted`` true. With ``cfg.distill``, ``teacher`` (a model sharing the
    student's tokenizer, see :mod:`docllm.training.distill`) supplies the soft targets:
    it is moved to the device and cast to its run dtype in place, frozen, and every rank runs
    it on its own micro-batches; validation stays plain cross-entropy.
    """
    if (cfg.distill is None) != (teacher is None):
        raise TrainingConfigError("distill", "distillation needs both train_config.distill and a teacher model")
    if teacher is not None:
        check_teacher(teacher.config, model_config)
    info = dist_info or init_distributed(cfg.device)
    device = info.device
    is_main = info.is_main
    block = model_config.block_size

    # -- determinism: same init on every rank, distinct dropout streams per rank
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    raw = GPT(model_config).to(device)
    if init is not None:
        # Before wrapping: DDP broadcasts and FSDP shards whatever the raw module holds.
        check_init_config(init.model_config, model_config.model_dump())
        raw.load_state_dict(init.state_dict)  # strict: every tensor of the model, no stray one
    torch.manual_seed(cfg.seed + info.rank)
    model = wrap_model(raw, info, cfg.distributed)
    fsdp = info.distributed and cfg.distributed == "fsdp"
    optimizer = _optimizer(model, cfg, device, sharded=fsdp)
    amp_dtype = _autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if teacher is not None and cfg.distill is not None:
        dtype = teacher_dtype(cfg.distill.teacher_dtype, amp_dtype)
        teacher = teacher.to(device=device, dtype=dtype).eval().requires_grad_(False)

    # -- resume
    state = _State()
    resumed_from: int | None = None
    ckpt_path = find_checkpoint(checkpoint_dir) if resume else None
    if ckpt_path is not None:
        payload = load_checkpoint(ckpt_path)
        if payload["model_config"] != model_config.model_dump():
            raise CheckpointError(f"{ckpt_path} was written for another model configuration")
        if payload["strategy"] != ("fsdp" if fsdp else "plain"):
            raise CheckpointError(f"{ckpt_path} was written under {payload['strategy']}, not resumable here")
        if fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            set_state_dict(
                raw,
                optimizer,
                model_state_dict=payload["model"],
                optim_state_dict=payload["optimizer"],
                options=StateDictOptions(full_state_dict=True),
            )
        else:
            raw.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
        scaler.load_state_dict(payload["scaler"])
        for key in ("step", "tokens_seen", "elapsed_s", "best_val", "last_val", "last_train"):
            setattr(state, key, payload["counters"][key])
        rank_states = payload["rank_states"]
        if len(rank_states) == info.world_size:
            set_rng_state(rank_states[info.rank]["rng"])
            train_data.load_state_dict(rank_states[info.rank]["data"])
        else:
            # Another world size: weights and optimizer carry over, data order and RNG restart.
            print(
                f"resuming on {info.world_size} ranks from {len(rank_states)}: data order restarts",
                file=sys.stderr,
            )
        resumed_from = state.step

    if cfg.compile:
        model = torch.compile(model)  # type: ignore[assignment]

    n_params = raw.num_params()
    planned = total_steps(cfg, block_size=block, world_size=info.world_size, sequences_per_epoch=len(train_data))
    budget_s = cfg.max_minutes * 60.0 if cfg.max_minutes is not None else None
    tokens_per_step = cfg.tokens_per_step(block_size=block, world_size=info.world_size)
    flops_per_token = model_config.flops_per_token(block)
    peak = peak_flops(device)
    sinks: list[Callback] = list(callbacks)
    if metrics is not None and is_main:
        sinks.append(MetricsCallback(metrics, metric_dimensions))
    history: list[LogRecord] = []

    def emit(record: LogRecord) -> None:
        history.append(record)
        if is_main:
            for cb in sinks:
                cb(record)

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    def teach(x: torch.Tensor) -> Distillation:
        """The teacher's final hidden states for ``x``, in its own dtype; its logits are formed in the loss."""
        assert teacher is not None and cfg.distill is not None
        with torch.inference_mode(), torch.autocast(device.type, enabled=False):
            hidden = teacher.hidden_states(x)  # (B, T, C_t)
        return Distillation(
            hidden.view(-1, hidden.size(-1)), teacher.lm_head.weight, cfg.distill.temperature, cfg.distill.alpha
        )

    val_start = val_data.state_dict() if val_data is not None else None

    @torch.no_grad()
    def evaluate() -> float | None:
        if val_data is None or val_start is None:
            return None
        model.eval()
        val_data.load_state_dict(val_start)  # the same batches every time
        it = iter(val_data)
        total = 0.0
        for _ in range(cfg.eval_batches):
            x, y = _next_batch(it, cfg.micro_batch_size, block, device)
            with autocast():
                _, loss = model(x, y)
            assert loss is not None
            total += float(loss.item())
        model.train()
        return all_reduce_mean(total / cfg.eval_batches, info)

    def checkpoint() -> str | None:
        if checkpoint_dir is None:
            return None
        if fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            msd, osd = get_state_dict(raw, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        else:
            msd, osd = raw.state_dict(), optimizer.state_dict()
        mine = {"rng": rng_state(), "data": train_data.state_dict()}
        rank_states: list[Any] = [mine]
        if info.distributed:
            rank_states = [None] * info.world_size
            dist.all_gather_object(rank_states, mine)
        path: Path | None = None
        if is_main:
            counters = {
                k: getattr(state, k) for k in ("step", "tokens_seen", "elapsed_s", "best_val", "last_val", "last_train")
            }
            payload = {
                "model": msd,
                "optimizer": osd,
                "scaler": scaler.state_dict(),
                "counters": counters,
                "rank_states": rank_states,
                "strategy": "fsdp" if fsdp else "plain",
                "model_config": model_config.model_dump(),
                "train_config": cfg.model_dump(),
            }
            meta = {**counters, "model_config": model_config.model_dump(), "world_size": info.world_size}
            path = save_checkpoint(checkpoint_dir, payload, meta)
        if info.distributed:
            dist.barrier()
        return str(path) if path is not None else str(checkpoint_dir / "ckpt.pt")

    show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    bar = None
    if show and is_main:
        from tqdm import tqdm

        bar = tqdm(total=planned, initial=state.step, unit="step", dynamic_ncols=True)

    # -- the loop
    model.train()
    data_iter = iter(train_data)
    interrupted = False
    last_ckpt_time = time.monotonic()
    log_t0, log_tokens0 = time.monotonic(), state.tokens_seen
    run_t0 = time.monotonic() - state.elapsed_s  # elapsed counts every session of this run
    last_path: str | None = None
    while True:
        elapsed = time.monotonic() - run_t0
        done = (planned is not None and state.step >= planned) or (budget_s is not None and elapsed >= budget_s)
        stopping = stop is not None and stop.is_set()
        done, stopping = any_rank(done, info), any_rank(stopping, info)
        if done or stopping:
            interrupted = stopping and not done
            break
        progress = max(
            (state.step - cfg.warmup_steps) / max(planned - cfg.warmup_steps, 1) if planned else 0.0,
            elapsed / budget_s if budget_s else 0.0,
        )
        lr = learning_rate(cfg, state.step, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr

        loss_sum = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum_steps):
            x, y = _next_batch(data_iter, cfg.micro_batch_size, block, device)
            last_micro = micro == cfg.grad_accum_steps - 1
            sync: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            if info.distributed and not last_micro:
                if fsdp:
                    raw.set_requires_gradient_sync(False)  # type: ignore[operator]
                else:
                    sync = model.no_sync()  # type: ignore[operator]
            elif fsdp:
                raw.set_requires_gradient_sync(True)  # type: ignore[operator]
            with sync:
                if teacher is None:
                    with autocast():
                        _, loss = model(x, y)
                else:
                    soft = teach(x)
                    with autocast():
                        _, loss = model(x, y, distill=soft)
                assert loss is not None
                loss = loss / cfg.grad_accum_steps
                scaler.scale(loss).backward()
            loss_sum += loss.detach()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.tokens_seen += tokens_per_step
        state.elapsed_s = time.monotonic() - run_t0

        if state.step % cfg.log_interval == 0 or (planned is not None and state.step == planned):
            state.last_train = all_reduce_mean(float(loss_sum.item()), info)
            now = time.monotonic()
            tps = (state.tokens_seen - log_tokens0) / max(now - log_t0, 1e-9)
            log_t0, log_tokens0 = now, state.tokens_seen
            mfu = flops_per_token * tps / (peak * info.world_size) if peak else None
            emit(LogRecord(state.step, "train", state.last_train, lr, state.tokens_seen, state.elapsed_s, tps, mfu))
            if bar is not None:
                bar.set_postfix(loss=f"{state.last_train:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
        if bar is not None:
            bar.update(1)
        if val_data is not None and state.step % cfg.eval_interval == 0:
            state.last_val = evaluate()
            assert state.last_val is not None
            state.best_val = state.last_val if state.best_val is None else min(state.best_val, state.last_val)
            emit(LogRecord(state.step, "val", state.last_val, lr, state.tokens_seen, state.elapsed_s))
        time_for_ckpt = cfg.checkpoint_minutes is not None and (
            time.monotonic() - last_ckpt_time >= cfg.checkpoint_minutes * 60
        )
        if state.step % cfg.checkpoint_interval == 0 or any_rank(time_for_ckpt, info):
            last_path = checkpoint()
            last_ckpt_time = time.monotonic()

    if bar is not None:
        bar.close()
    if not interrupted and val_data is not None and (state.last_val is None or state.step % cfg.eval_interval):
        state.last_val = evaluate()
        assert state.last_val is not None
        state.best_val = state.last_val if state.best_val is None else min(state.best_val, state.last_val)
        emit(LogRecord(state.step, "val", state.last_val, 0.0, state.tokens_seen, state.elapsed_s))
    last_path = checkpoint() or last_path

    final: GPT | None = raw
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(raw, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        final = None
        if is_main:
            final = GPT(model_config)
            final.load_state_dict(full)
    elif not is_main:
        final = None
    result = TrainResult(
        steps=state.step,
        tokens_seen=state.tokens_seen,
        train_loss=state.last_train,
        val_loss=state.last_val,
        best_val_loss=state.best_val,
        elapsed_s=state.elapsed_s,
        tokens_per_s=state.tokens_seen / max(state.elapsed_s, 1e-9),
        interrupted=interrupted,
        checkpoint=last_path,
        resumed_from_step=resumed_from,
        world_size=info.world_size,
        device=str(device),
        n_params=n_params,
    )
    return TrainOutcome(result=result, model=final, history=history)


def result_dict(result: TrainResult) -> dict[str, Any]:
    return asdict(result)
