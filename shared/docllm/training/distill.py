"""The teacher of a distillation run: loaded from our own artefacts, checked against the student.

A teacher is one of the platform's earlier models, read from the ``teacher`` channel of the
training job: either a Hugging Face export written by :func:`docllm.model.export.export_hf`
(``docllm_model.json`` + ``model.safetensors``) or a training checkpoint directory (``ckpt.pt``).
It must share the student's tokenizer: the same (padded) vocabulary, the same tokenizer files
where both sides have them, and a context at least as long as the student's.

Example
-------
>>> teacher = load_teacher(Path("/opt/ml/input/data/teacher"))      # doctest: +SKIP
>>> check_teacher(teacher.model.config, student_config)             # doctest: +SKIP
>>> teacher.weights_file, teacher.weights_sha256[:8]                # doctest: +SKIP
('model.safetensors', '3f2a9c1e')
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from docllm.model.config import ModelConfig
from docllm.model.export import CONFIG_FILE, TOKENIZER_FILES, load_hf_export
from docllm.model.gpt import GPT
from docllm.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from docllm.training.exceptions import TrainingConfigError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Teacher:
    """A loaded teacher and what identifies the weights it was loaded from."""

    model: GPT
    weights_file: str  # relative to the teacher's directory: model.safetensors or ckpt.pt
    weights_sha256: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(8 * 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_teacher(directory: Path) -> Teacher:
    """The teacher in ``directory`` (an export or a checkpoint directory), in eval mode, without grad.

    Raises
    ------
    TrainingConfigError
        The directory holds neither an export nor a checkpoint.
    """
    if (directory / CONFIG_FILE).exists():
        model, weights = load_hf_export(directory), "model.safetensors"
    elif (directory / CHECKPOINT_FILE).exists():
        payload = load_checkpoint(directory / CHECKPOINT_FILE)
        model = GPT(ModelConfig.model_validate(payload["model_config"]))
        model.load_state_dict(payload["model"])
        weights = CHECKPOINT_FILE
    else:
        found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        raise TrainingConfigError(
            "distill.teacher_uri",
            f"holds neither a docllm export ({CONFIG_FILE}) nor a checkpoint ({CHECKPOINT_FILE}); found {found}",
        )
    model.eval().requires_grad_(False)
    return Teacher(model=model, weights_file=weights, weights_sha256=_sha256(directory / weights))


def check_teacher(teacher: ModelConfig, student: ModelConfig) -> None:
    """Refuse a teacher whose outputs the student cannot be trained on.

    Raises
    ------
    TrainingConfigError
        Different vocabularies (another tokenizer), or a teacher context shorter than the student's.
    """
    if teacher.vocab_size != student.vocab_size:
        raise TrainingConfigError(
            "distill.teacher_uri",
            f"the teacher's vocabulary has {teacher.vocab_size} rows and the student's {student.vocab_size}: "
            "a teacher must share the student's tokenizer",
        )
    if teacher.block_size < student.block_size:
        raise TrainingConfigError(
            "distill.teacher_uri",
            f"the teacher's context ({teacher.block_size}) is shorter than the student's ({student.block_size})",
        )


def check_same_tokenizer(teacher_dir: Path, tokenizer_dir: Path) -> None:
    """Refuse a teacher whose tokenizer files differ from the student's (an export carries its own).

    Equal vocabulary sizes do not make equal tokenizers: a retrained tokenizer of the same size maps
    ids to other pieces, and distilling across it would teach the student nonsense. A checkpoint has
    no tokenizer files; only the vocabulary size is checked for it (:func:`check_teacher`).

    Raises
    ------
    TrainingConfigError
        A tokenizer file both directories hold differs.
    """
    for name in TOKENIZER_FILES:
        ours, theirs = tokenizer_dir / name, teacher_dir / name
        if ours.exists() and theirs.exists() and _sha256(ours) != _sha256(theirs):
            raise TrainingConfigError(
                "distill.teacher_uri",
                f"the teacher's {name} differs from the student's: a teacher must share the student's tokenizer",
            )


def teacher_dtype(setting: str, autocast_dtype: torch.dtype | None) -> torch.dtype:
    """The dtype the teacher runs in: the setting's, or with ``auto`` the training's autocast dtype."""
    if setting == "auto":
        return autocast_dtype if autocast_dtype is not None else torch.float32
    return DTYPES[setting]
