"""Checkpoints: everything an exact resume needs, written atomically.

One file, ``ckpt.pt``, in the job's checkpoint directory (SageMaker syncs
``/opt/ml/checkpoints`` to S3; the local runner copies it likewise), with a
``ckpt.json`` sidecar a person or a Lambda can read without torch. Each write
goes to a temporary file in the same directory, is fsynced, then renamed over
the old one, so an interruption mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from docllm.training.exceptions import CheckpointError

CHECKPOINT_FILE = "ckpt.pt"
META_FILE = "ckpt.json"
FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """Every generator the loop may draw from, as primitives and tensors (safe for weights_only loads)."""
    np_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    kind, keys, pos, has_gauss, cached = np_state
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(directory: Path, payload: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and primitives) and its JSON ``meta`` atomically; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    _atomic_write(path, lambda f: torch.save({"format_version": FORMAT_VERSION, **payload}, f))
    body = json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=2).encode()
    _atomic_write(directory / META_FILE, lambda f: f.write(body))
    return path


def find_checkpoint(directory: Path | None) -> Path | None:
    if directory is None:
        return None
    path = directory / CHECKPOINT_FILE
    return path if path.exists() else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises a variety (pickle, zip, runtime) for a damaged file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format {payload.get('format_version')}, expected {FORMAT_VERSION}")
    return payload
