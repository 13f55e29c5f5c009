"""Training configuration: pydantic, light (no torch), one docstring per field.

Example
-------
>>> cfg = TrainConfig(max_steps=100, micro_batch_size=4)
>>> cfg.tokens_per_step(block_size=256, world_size=2)
2048
>>> parse_train_config('{"max_steps": 0}')
Traceback (most recent call last):
...
docllm.training.exceptions.TrainingConfigError: max_steps: Input should be greater than or equal to 1
"""

from __future__ import annotations

import json
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from docllm.training.exceptions import TrainingConfigError


class DistillConfig(BaseModel):
    """Logit distillation from a teacher model (the ``distill`` method; docs/training.md, "Distillation").

    The student's loss becomes ``(1 - alpha)·CE + alpha·T²·KL(teacher_T ‖ student_T)`` over the
    counted positions (:func:`docllm.model.loss.linear_distillation_loss`); validation stays the
    plain held-out cross-entropy, so students and teachers are compared on the same measure.
    The teacher must share the student's tokenizer.

    Example
    -------
    >>> DistillConfig(teacher_uri="s3://art/models/tiny-s3/v1/hf/", temperature=2.0).alpha
    0.5
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    teacher_uri: str = Field(min_length=1)
    """s3:// prefix of the teacher's Hugging Face export (``.../hf/``) or checkpoint directory; the job
    reads it as its ``teacher`` channel."""
    teacher_version: str | None = None
    """The teacher's model version (from its model record), recorded in the result and the manifest."""
    teacher_manifest_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """sha256 of the teacher's signed compliance manifest, when it has one; recorded likewise."""
    temperature: float = Field(default=2.0, gt=0)
    """Softmax temperature of both distributions in the distillation term."""
    alpha: float = Field(default=0.5, ge=0, le=1)
    """Weight of the distillation term; the LM cross-entropy gets 1 - alpha (0: plain training)."""
    teacher_dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """dtype the teacher is held and run in; auto: the training's autocast dtype (bf16 or fp32)."""


class TrainConfig(BaseModel):
    """How to train; the model's shape is a separate :class:`docllm.model.config.ModelConfig`."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    micro_batch_size: int = Field(default=8, ge=1)
    """Sequences per rank per forward/backward."""
    grad_accum_steps: int = Field(default=1, ge=1)
    """Micro-batches accumulated before each optimizer step."""

    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Stop after this many training tokens (all ranks together)."""
    max_epochs: float | None = Field(default=None, gt=0)
    """Stop after this many passes over the training split."""
    max_minutes: float | None = Field(default=None, gt=0)
    """Stop after this much training time; the learning-rate schedule then follows time."""

    learning_rate: float = Field(default=6e-4, gt=0)
    """Peak learning rate, reached after warmup."""
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    """Final learning rate as a fraction of the peak (cosine decay)."""
    warmup_steps: int = Field(default=100, ge=0)
    """Linear warmup steps."""
    weight_decay: float = Field(default=0.1, ge=0)
    """AdamW decoupled weight decay, applied to matrices only (not norms, biases)."""
    beta1: float = Field(default=0.9, gt=0, lt=1)
    """AdamW beta1."""
    beta2: float = Field(default=0.95, gt=0, lt=1)
    """AdamW beta2."""
    grad_clip: float = Field(default=1.0, ge=0)
    """Clip the global gradient norm to this; 0 disables."""

    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Autocast dtype: auto is bf16 on GPUs that have it, else fp32; fp16 adds a GradScaler."""
    tf32: bool = True
    """Allow TF32 matmuls on Ampere and newer GPUs."""
    compile: bool = False
    """Wrap the model in torch.compile."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto picks CUDA when available."""
    distributed: Literal["ddp", "fsdp"] = "ddp"
    """Strategy when launched by torchrun with more than one process."""

    eval_interval: int = Field(default=200, ge=1)
    """Steps between validation losses (one is always computed at the end)."""
    eval_batches: int = Field(default=20, ge=1)
    """Micro-batches per validation loss, always the same ones."""
    log_interval: int = Field(default=10, ge=1)
    """Steps between logged training losses."""
    checkpoint_interval: int = Field(default=500, ge=1)
    """Steps between periodic checkpoints."""
    checkpoint_minutes: float | None = Field(default=10.0, gt=0)
    """Also checkpoint when this much time passed since the last one (spot safety)."""
    seed: int = 1337
    """Seed of every random generator (init, dropout)."""
    progress: bool | None = None
    """Progress bar: None shows one when stderr is a terminal."""
    distill: DistillConfig | None = None
    """Train from a teacher's logits as well as the tokens (the ``distill`` method); None: plain training."""

    @model_validator(mode="after")
    def _needs_budget(self) -> Self:
        if all(v is None for v in (self.max_steps, self.max_tokens, self.max_epochs, self.max_minutes)):
            raise ValueError("set at least one budget: max_steps, max_tokens, max_epochs or max_minutes")
        return self

    def tokens_per_step(self, *, block_size: int, world_size: int = 1) -> int:
        return self.micro_batch_size * self.grad_accum_steps * block_size * world_size


def parse_train_config(raw: str | dict[str, Any], **defaults: Any) -> TrainConfig:
    """Validate JSON (or a dict) into :class:`TrainConfig`; errors name the offending field.

    ``defaults`` are applied first, so ``raw`` overrides them.
    """
    try:
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except json.JSONDecodeError as e:
        raise TrainingConfigError("train_config", f"not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise TrainingConfigError("train_config", "must be a JSON object")
    try:
        return TrainConfig.model_validate({**defaults, **data})
    except ValidationError as e:
        raise validation_to_config_error(e) from e


def validation_to_config_error(e: ValidationError, prefix: str = "") -> TrainingConfigError:
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "train_config"
    return TrainingConfigError(prefix + field, err["msg"])
