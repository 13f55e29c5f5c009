"""Checkpoints: everything an exact resume needs, written atomically.

One file, ``ckpt.pt``, in the job's checkpoint directory (SageMaker syncs
``/opt/ml/checkpoints`` to S3; the local runner copies it likewise), with a
``ckpt.json`` sidecar a person or a Lambda can read without torch. Each write
goes to a temporary file in the same directory, is fsynced, then renamed over
the old one, so an interruption mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
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


# --- initial weights (a continued run) ---------------------------------------------------------

#: Model-config fields that may differ between the initial weights and the run: they change no
#: tensor's shape or meaning (dropout is a training setting, init_std only matters without weights).
_INIT_FREE_FIELDS = frozenset({"dropout", "init_std"})


@dataclass(frozen=True)
class InitWeights:
    """Weights a run starts from instead of a random init (the job's ``init`` channel).

    Only the weights: a continued run has its own optimizer, step counter, schedule and data
    order, so none of a checkpoint's other state is carried over.
    """

    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    weights_file: str  # relative to the directory it was read from: model.safetensors or ckpt.pt
    weights_sha256: str


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(8 * 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_init_weights(directory: Path) -> InitWeights:
    """The weights in ``directory``: a docllm Hugging Face export (``docllm_model.json`` +
    ``model.safetensors``, what a registered model points at) or a checkpoint directory (``ckpt.pt``).

    Raises
    ------
    CheckpointError
        The directory holds neither, or the file cannot be read.
    """
    from docllm.model.config import ModelConfig
    from docllm.model.export import CONFIG_FILE, from_hf_state_dict

    if (directory / CONFIG_FILE).exists():
        from safetensors.torch import load_file

        weights = directory / "model.safetensors"
        if not weights.exists():
            raise CheckpointError(f"{directory} has {CONFIG_FILE} but no model.safetensors")
        cfg = ModelConfig.model_validate_json((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        try:
            state = from_hf_state_dict(load_file(str(weights)), cfg)
        except Exception as e:  # safetensors and the key mapping raise several kinds for a bad file
            raise CheckpointError(f"cannot read {weights}: {type(e).__name__}: {e}") from e
        return InitWeights(cfg.model_dump(), state, weights.name, _sha256_file(weights))
    path = directory / CHECKPOINT_FILE
    if path.exists():
        payload = load_checkpoint(path)
        return InitWeights(payload["model_config"], payload["model"], CHECKPOINT_FILE, _sha256_file(path))
    found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise CheckpointError(
        f"{directory} holds neither a docllm export ({CONFIG_FILE}) nor a checkpoint ({CHECKPOINT_FILE}); found {found}"
    )


def check_init_config(init_config: dict[str, Any], model_config: dict[str, Any]) -> None:
    """Refuse initial weights made for another model: every shape-defining field must match.

    A different ``vocab_size`` means another tokenizer; any other difference (layers, width, heads,
    variant, context of learned positions, ...) means tensors that do not fit or mean something else.

    Raises
    ------
    CheckpointError
        Naming each differing field with both values.
    """
    keys = (set(init_config) | set(model_config)) - _INIT_FREE_FIELDS
    differ = sorted(k for k in keys if init_config.get(k) != model_config.get(k))
    if differ:
        detail = ", ".join(f"{k}: {init_config.get(k)!r} (init) vs {model_config.get(k)!r} (run)" for k in differ)
        hint = " — the tokenizer differs: a continued run must keep the tokenizer" if "vocab_size" in differ else ""
        raise CheckpointError(f"the initial weights were made for another model: {detail}{hint}")


def check_init_tokenizer(init_dir: Path, tokenizer_dir: Path) -> None:
    """Refuse initial weights exported with other tokenizer files than the run's (an export carries
    its tokenizer; a checkpoint does not, and then only the vocabulary size is checked).

    Equal sizes do not make equal tokenizers: a retrained one of the same size maps ids to other
    pieces, and continuing across it would start from embeddings of the wrong pieces.

    Raises
    ------
    CheckpointError
        A tokenizer file both directories hold differs.
    """
    from docllm.model.export import TOKENIZER_FILES

    for name in TOKENIZER_FILES:
        ours, theirs = tokenizer_dir / name, init_dir / name
        if ours.exists() and theirs.exists() and _sha256_file(ours) != _sha256_file(theirs):
            raise CheckpointError(
                f"the initial weights' {name} differs from the run's tokenizer: a continued run must keep the tokenizer"
            )
