"""Process-group setup and model wrapping for DDP and FSDP2 under torchrun.

A single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) runs without any
process group, so tests and the local runner need nothing special.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: Literal["auto", "cpu", "cuda"], local_rank: int = 0) -> torch.device:
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def init_distributed(preference: Literal["auto", "cpu", "cuda"] = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment (idempotent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def wrap_model(model: nn.Module, info: DistInfo, strategy: Literal["ddp", "fsdp"]) -> nn.Module:
    """DDP, or FSDP2 ``fully_shard`` per block then the root (which holds the tied embedding/head)."""
    if not info.distributed:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard

    for block in model.transformer["h"]:  # type: ignore[index]
        fully_shard(block)
    fully_shard(model)
    return model


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / info.world_size


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on at least one (all ranks must stop together)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
