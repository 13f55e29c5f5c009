"""Two CPU processes (gloo) train exactly like one process with the same global batch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from docllm.model.config import ModelConfig
from docllm.model.gpt import GPT
from docllm.training.config import TrainConfig
from docllm.training.distributed import DistInfo
from docllm.training.loop import train
from docllm.training.streams import ArrayTokenStream

BLOCK, VOCAB = 16, 64


def _tokens() -> np.ndarray:
    return np.resize(np.random.default_rng(0).integers(0, VOCAB, size=29), 4000)


def _model() -> ModelConfig:
    return ModelConfig(variant="llama", n_layer=2, n_head=2, n_embd=32, block_size=BLOCK, vocab_size=VOCAB)


def _teacher(distill: bool) -> GPT | None:
    """A wider random teacher (every rank builds the same one), or None for plain training."""
    if not distill:
        return None
    torch.manual_seed(5)
    return GPT(_model().model_copy(update={"n_embd": 48, "init_std": 0.1}))


def _cfg(micro: int, strategy: str, distill: bool = False) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "distill": {"teacher_uri": "s3://art/teacher/hf/", "alpha": 0.7} if distill else None,
            "max_steps": 6,
            "micro_batch_size": micro,
            "grad_accum_steps": 2,
            "warmup_steps": 1,
            "learning_rate": 3e-3,
            "log_interval": 1,
            "eval_interval": 100,
            "device": "cpu",
            "precision": "fp32",
            "progress": False,
            "distributed": strategy,
        }
    )


def _worker(rank: int, world: int, rendezvous: str, strategy: str, out: str, distill: bool) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    # A file rendezvous, not a TCP port: a port probed free can be taken before gloo binds it
    # (an intermittent failure seen once in a full run).
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        # Unshuffled, round-robin: rank r takes sequences r, r+2, …; together they cover what one
        # process takes with a batch twice as large.
        stream = ArrayTokenStream(_tokens(), block_size=BLOCK, shuffle=False, rank=rank, world_size=world)
        info = DistInfo(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
        outcome = train(
            _model(),
            _cfg(2, strategy, distill),
            stream,
            dist_info=info,
            checkpoint_dir=Path(out) / "ckpt",
            teacher=_teacher(distill),
        )
        if rank == 0:
            assert outcome.model is not None
            losses = [r.loss for r in outcome.history if r.kind == "train"]
            torch.save({"state": outcome.model.state_dict(), "losses": losses}, Path(out) / "result.pt")
    finally:
        dist.destroy_process_group()


def _spawn_two(strategy: str, tmp_path: Path, distill: bool) -> Path:
    """Two gloo workers; once more on a fresh rendezvous if a worker *dies by a signal* (gloo's C++
    side aborting on a 2-core machine under a full test run's load: seen once in a CI rehearsal).
    A Python error or a wrong result is never retried."""
    for attempt in (1, 2):
        out = tmp_path / f"attempt-{attempt}"
        out.mkdir()
        try:
            mp.spawn(_worker, args=(2, str(out / "rendezvous"), strategy, str(out), distill), nprocs=2, join=True)
            return out
        except mp.ProcessExitedException as e:
            if attempt == 2 or e.signal_name is None:
                raise
    raise AssertionError("unreachable")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "distill"), [("ddp", False), ("fsdp", False), ("ddp", True)], ids=["ddp", "fsdp", "ddp-distill"]
)
def test_two_processes_match_one_process_with_the_same_global_batch(
    strategy: str, distill: bool, tmp_path: Path
) -> None:
    out = _spawn_two(strategy, tmp_path, distill)
    multi = torch.load(out / "result.pt", weights_only=True)
    assert (out / "ckpt" / "ckpt.pt").exists()

    torch.set_num_threads(1)
    single_stream = ArrayTokenStream(_tokens(), block_size=BLOCK, shuffle=False)
    single = train(_model(), _cfg(4, strategy, distill), single_stream, teacher=_teacher(distill))
    assert single.model is not None
    np.testing.assert_allclose(
        multi["losses"], [r.loss for r in single.history if r.kind == "train"], rtol=0, atol=1e-5
    )
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(multi["state"][name], value, atol=1e-5, rtol=1e-4, msg=name)
