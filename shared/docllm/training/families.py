"""Model families: size, architecture, data filter, budget and hardware, from ``families.yaml``.

Light (pydantic and PyYAML only): the training Lambda reads families without torch.

Example
-------
>>> fam = load_families()["tiny-s3"]
>>> fam.preset, fam.services, fam.budget.minutes
('tiny', ['s3'], 5.0)
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from docllm.answers.tuning import AnswerTuning
from docllm.model.config import PRESETS, PresetName, Variant
from docllm.training.config import TrainConfig, validation_to_config_error
from docllm.training.exceptions import TrainingConfigError, UnknownFamilyError


class Budget(BaseModel):
    """When training stops: the first limit reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int | None = Field(default=None, ge=1, description="training tokens, all ranks together")
    minutes: float | None = Field(default=None, gt=0, description="training time")
    epochs: float | None = Field(default=None, gt=0, description="passes over the training split")

    @model_validator(mode="after")
    def _some_limit(self) -> Self:
        if self.tokens is None and self.minutes is None and self.epochs is None:
            raise ValueError("set at least one of tokens, minutes, epochs")
        return self


class ModelFamily(BaseModel):
    """One model the platform trains and keeps current."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,30}$", description="family id, used in job names")
    description: str = ""
    preset: PresetName = Field(description="model shape, see docllm.model.config.PRESETS")
    variant: Variant = Field(default="llama", description="architecture, decides the HF export class")
    block_size: int | None = Field(default=None, ge=8, description="context length; None: the preset's")
    services: list[str] = Field(default_factory=list, description="data filter; empty: every service")
    budget: Budget
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = Field(default=1, ge=1)
    spot: bool = False
    max_wait_minutes: int | None = Field(default=None, ge=1, description="spot only; None: 2x runtime")
    volume_gb: int = Field(default=50, ge=1)
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig overrides")
    tokenizer: dict[str, Any] = Field(
        default_factory=dict, description="TokenizerSettings overrides, e.g. a small vocab_size for a tiny model"
    )
    answer_tuning: AnswerTuning | None = Field(
        default=None,
        description="mix (context, question, answer) examples into the training data (docs/training.md, "
        "'Answer tuning'); None: language-model data only",
    )

    @model_validator(mode="after")
    def _tokenizer_overrides_valid(self) -> Self:
        from docllm.tokenizer.settings import TokenizerSettings

        TokenizerSettings.model_validate(self.tokenizer)  # raises with the field named
        return self

    @model_validator(mode="after")
    def _train_overrides_valid(self) -> Self:
        self.train_config()  # raises with the field named
        return self

    @property
    def context_length(self) -> int:
        return self.block_size or PRESETS[self.preset]["block_size"]

    @property
    def max_runtime_s(self) -> int:
        """Job time limit: the time budget plus room for startup, evaluation and export."""
        minutes = self.budget.minutes if self.budget.minutes is not None else 24 * 60
        return int(minutes * 60 * 1.25) + 1800

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The family's TrainConfig: its budget and overrides, then ``overrides`` on top."""
        data: dict[str, Any] = {
            "max_tokens": self.budget.tokens,
            "max_minutes": self.budget.minutes,
            "max_epochs": self.budget.epochs,
            **self.train,
            **overrides,
        }
        try:
            return TrainConfig.model_validate(data)
        except ValidationError as e:
            raise validation_to_config_error(e, prefix=f"families.{self.name}.train.") from e

    def job_name(self, suffix: str) -> str:
        """A SageMaker-valid job name (≤ 63 chars, alphanumerics and hyphens)."""
        raw = re.sub(r"[^a-zA-Z0-9-]+", "-", f"{self.name}-{suffix}").strip("-")
        return raw[:63].rstrip("-")


def parse_families(text: str, *, source: str = "families.yaml") -> dict[str, ModelFamily]:
    """Validate a families document; errors name the family and the field."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TrainingConfigError(source, f"not valid YAML: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("families"), dict):
        raise TrainingConfigError(source, "expected a mapping under 'families'")
    out: dict[str, ModelFamily] = {}
    for name, body in doc["families"].items():
        if not isinstance(body, dict):
            raise TrainingConfigError(f"families.{name}", "must be a mapping")
        try:
            out[str(name)] = ModelFamily.model_validate({"name": name, **body})
        except ValidationError as e:
            raise validation_to_config_error(e, prefix=f"families.{name}.") from e
    return out


@cache
def _packaged() -> str:
    return resources.files("docllm.training").joinpath("families.yaml").read_text(encoding="utf-8")


def load_families(path: Path | None = None) -> dict[str, ModelFamily]:
    """Every family from ``path`` or from the packaged ``families.yaml``."""
    if path is not None:
        return parse_families(path.read_text(encoding="utf-8"), source=str(path))
    return parse_families(_packaged())


def family(name: str, path: Path | None = None) -> ModelFamily:
    """The family called ``name``; :class:`UnknownFamilyError` (permanent: a request naming it fails
    at once, with the known names) when there is none."""
    families = load_families(path)
    try:
        return families[name]
    except KeyError:
        raise UnknownFamilyError(name, sorted(families)) from None
