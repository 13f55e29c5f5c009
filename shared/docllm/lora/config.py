"""The settings of a LoRA fine-tuning run (light: pydantic only, so Lambdas can import it).

One object holds everything the run depends on, and its JSON is what the job receives (hyperparameter
``lora_config``) and what ``result.json`` records as ``train_config``:

* the **base model**: an ``s3://`` prefix in the platform's object store holding a Hugging Face causal
  LM directory (``config.json``, ``*.safetensors``, tokenizer files). Never a hub id: the job reads
  the directory SageMaker (or the local runner) copied from that prefix, with ``local_files_only``;
* the **adapter**: rank ``r``, ``alpha`` (the update is scaled by ``alpha / r``), ``dropout`` and the
  ``target_modules`` (``"all-linear"``: every linear layer but the output head, resolved to the
  layer names of the base's architecture, which is what vLLM's LoRA support expects);
* the **schedule**: AdamW at ``learning_rate`` with ``warmup_steps`` of linear warmup then linear
  decay to zero, ``epochs`` over the training examples, or ``max_steps`` optimizer steps when set;
* the **data**: the answer-tuning builder's settings, ``max_length`` (the context the prompts are
  built for and the longest tokenized example), ``validation_share`` and the optional TF-IDF
  ``subset`` of the training sections; ``seed`` fixes the split, the adapter's initialisation and
  the batch order.

Example
-------
>>> cfg = LoraConfig(base_model_uri="s3://artifacts/models/tiny-s3/v3/hf/", r=16, alpha=32)
>>> cfg.scaling, cfg.target_modules
(2.0, 'all-linear')
>>> LoraConfig.from_overrides({"base_model_uri": "s3://artifacts/models/m/hf/", "r": 0})
Traceback (most recent call last):
...
docllm.lora.exceptions.LoraConfigError: lora_config.r: Input should be greater than or equal to 1
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from docllm.answers.tuning import AnswerTuning
from docllm.lora.exceptions import LoraConfigError
from docllm.lora.subset import SubsetConfig

#: Module names a target list may use: identifiers, as PEFT matches them against layer names.
_MODULE_NAME = r"^[A-Za-z_][A-Za-z0-9_.]*$"


class LoraConfig(BaseModel):
    """A LoRA run's settings (module docstring). Every field is validated; errors name it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model_uri: str = Field(
        # Upper case too: the local platform names its buckets by their template ids (ArtifactBucket).
        pattern=r"^s3://[A-Za-z0-9][A-Za-z0-9.\-]{1,61}[A-Za-z0-9]/.+",
        description="s3:// prefix of the base model's Hugging Face directory in the object store",
    )
    r: int = Field(default=8, ge=1, le=256, description="rank of the update matrices")
    alpha: int = Field(default=16, ge=1, le=4096, description="scale of the update: alpha / r")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: tuple[str, ...] | Literal["all-linear"] = Field(
        default="all-linear", description="layer names to adapt (e.g. q_proj, v_proj) or all-linear"
    )
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="peak AdamW learning rate")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="AdamW weight decay on the adapter")
    warmup_steps: int = Field(default=0, ge=0, description="optimizer steps of linear warmup")
    epochs: int = Field(default=1, ge=1, le=100, description="passes over the training examples")
    max_steps: int | None = Field(default=None, ge=1, description="optimizer steps; overrides epochs when set")
    micro_batch_size: int = Field(default=4, ge=1, le=1024, description="examples per forward pass")
    grad_accum_steps: int = Field(default=1, ge=1, le=1024, description="forward passes per optimizer step")
    grad_clip: float = Field(default=1.0, ge=0, description="max gradient norm (0: no clipping)")
    max_length: int = Field(default=512, ge=32, le=131_072, description="longest example in tokens; prompt budget")
    validation_share: float = Field(default=0.1, ge=0, lt=1, description="share of documents held out")
    eval_interval: int = Field(default=50, ge=1, description="optimizer steps between validation losses")
    log_interval: int = Field(default=10, ge=1, description="optimizer steps between logged training losses")
    seed: int = Field(default=0, ge=0, description="split, adapter initialisation and batch order")
    answer_tuning: AnswerTuning = Field(
        default_factory=AnswerTuning, description="the example builder's settings (its share is unused)"
    )
    subset: SubsetConfig | None = Field(default=None, description="TF-IDF subsetting of the training sections")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda when available")
    dtype: Literal["float32", "bfloat16"] = Field(default="float32", description="base weights while training")

    @field_validator("target_modules")
    @classmethod
    def _names(cls, v: tuple[str, ...] | str) -> tuple[str, ...] | str:
        if isinstance(v, tuple):
            import re

            if not v:
                raise ValueError("name at least one module, or all-linear")
            bad = [m for m in v if not re.match(_MODULE_NAME, m)]
            if bad:
                raise ValueError(f"not module names: {bad}")
        return v

    @property
    def scaling(self) -> float:
        """What the low-rank update is multiplied by: ``alpha / r``."""
        return self.alpha / self.r

    @classmethod
    def from_overrides(cls, values: dict[str, Any]) -> LoraConfig:
        """Validate ``values``; the first error is a :class:`LoraConfigError` naming ``lora_config.<field>``."""
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "lora_config"
            raise LoraConfigError(f"lora_config.{loc}", err["msg"]) from e
