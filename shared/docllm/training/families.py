"""Model families: size, architecture, data filter, budget and hardware, from ``families.yaml``.

Light (pydantic and PyYAML only): the training Lambda reads families without torch.

Example
-------
>>> fam = load_families()["tiny-s3"]
>>> fam.preset, fam.services, fam.budget.minutes
('tiny', ['s3'], 5.0)
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from docllm.answers.tuning import AnswerTuning
from docllm.model.config import PRESETS, PresetName, Variant
from docllm.training.config import TrainConfig, validation_to_config_error
from docllm.training.exceptions import TrainingConfigError, UnknownFamilyError

#: How a family's model is made (docs/families.md):
#: ``pretrain`` from scratch; ``continue`` from the family's champion on the new data with a short
#: schedule (a full run when there is no champion, or when the tokenizer's coverage of the new data
#: fell below the threshold); ``lora`` an adapter on a base model from the object store;
#: ``bedrock-customization`` Amazon Bedrock's managed fine-tuning; ``distill`` a student trained on
#: a teacher family's champion's logits.
Method = Literal["pretrain", "continue", "lora", "bedrock-customization", "distill"]


class DataFilter(BaseModel):
    """Which processed documents a family trains on (and whose changes make it stale). Empty
    lists select everything; a document must match every non-empty list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    services: list[str] = Field(default_factory=list, description="e.g. [s3, iam]; empty: every service")
    paths: list[str] = Field(
        default_factory=list, description="fnmatch patterns on the document key, e.g. 's3/*Bucket*'; empty: any"
    )
    languages: list[str] = Field(default_factory=list, description="ISO 639-1 codes, e.g. [en]; empty: any")

    def matches(self, doc_key: str, service: str | None, language: str | None) -> bool:
        """Whether a document with this key, service and language belongs to the family's data.
        A document whose language is unknown passes a language filter (ingest could not tell)."""
        if self.services and service not in self.services:
            return False
        if self.paths and not any(fnmatch.fnmatchcase(doc_key, pattern) for pattern in self.paths):
            return False
        return not (self.languages and language and language not in self.languages)

    @property
    def is_everything(self) -> bool:
        return not (self.services or self.paths or self.languages)


class RetrainPolicy(BaseModel):
    """When new data retrains the family (docs/pipelines.md). A change is a new, changed or removed
    document matching the family's filter; changes accumulate as the family's stale reasons."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_change: bool = Field(default=True, description="matching document changes mark the family stale")
    min_documents: int = Field(default=1, ge=1, description="start once this many documents changed ...")
    min_tokens: int | None = Field(default=None, ge=1, description="... or this many tokens did (None: count only)")
    settle_minutes: float = Field(
        default=10, ge=0, description="debounce: wait this long after the last change for more to arrive"
    )
    min_interval_hours: float = Field(default=6, ge=0, description="at most one run per this many hours")
    schedule: str | None = Field(
        default=None,
        pattern=r"^rate\(\d+ (minute|minutes|hour|hours|day|days)\)$",
        description="EventBridge rate expression, e.g. 'rate(1 day)': a stale family retrains on this "
        "schedule even below the thresholds (a family whose data did not change never does)",
    )


class IncrementalPolicy(BaseModel):
    """How a ``continue`` run differs from a full one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget_share: float = Field(default=0.25, gt=0, le=1, description="share of the family's budget")
    learning_rate_share: float = Field(default=0.5, gt=0, le=1, description="share of the peak learning rate")
    warmup_steps: int = Field(default=0, ge=0, description="the champion is warm already")
    min_tokenizer_coverage: float = Field(
        default=0.98,
        gt=0,
        le=1,
        description="the champion's tokenizer must cover this share of the new data's tokens "
        "(not unknown, not byte fallback); below it the run is a full retrain with a new tokenizer",
    )


class LoraMethod(BaseModel):
    """The base model of a ``lora`` family and the LoRA settings (docllm.lora.config.LoraConfig)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_family: str | None = Field(default=None, description="use this family's champion's export as the base")
    base_model_uri: str | None = Field(
        default=None, description="or an s3:// prefix of an approved Hugging Face directory the organisation uploaded"
    )
    config: dict[str, Any] = Field(default_factory=dict, description="LoraConfig overrides (r, alpha, subset, ...)")

    @model_validator(mode="after")
    def _one_base(self) -> Self:
        if (self.base_family is None) == (self.base_model_uri is None):
            raise ValueError("name exactly one of base_family, base_model_uri")
        return self


class DistillMethod(BaseModel):
    """The teacher of a ``distill`` family (docllm.training.config.DistillConfig for the rest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher_family: str = Field(description="the student learns from this family's champion")
    temperature: float = Field(default=2.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)


class BedrockMethod(BaseModel):
    """Amazon Bedrock model customization (``CreateModelCustomizationJob``) for this family."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model_identifier: str = Field(min_length=1, description="Bedrock foundation model id or ARN")
    customization_type: Literal["FINE_TUNING", "CONTINUED_PRE_TRAINING"] = "FINE_TUNING"
    hyperparameters: dict[str, str] = Field(
        default_factory=dict, description="Bedrock's names and string values, e.g. {epochCount: '2'}"
    )


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
    method: Method = Field(default="pretrain", description="how the model is made (Method)")
    preset: PresetName = Field(description="model shape, see docllm.model.config.PRESETS")
    variant: Variant = Field(default="llama", description="architecture, decides the HF export class")
    block_size: int | None = Field(default=None, ge=8, description="context length; None: the preset's")
    model: dict[str, Any] = Field(
        default_factory=dict, description="ModelConfig overrides on the preset, e.g. n_embd for a half-size student"
    )
    services: list[str] = Field(default_factory=list, description="data filter; empty: every service")
    paths: list[str] = Field(default_factory=list, description="data filter: fnmatch patterns on document keys")
    languages: list[str] = Field(default_factory=list, description="data filter: ISO 639-1 codes")
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
    tokenizer_policy: Literal["own", "shared"] = Field(
        default="own",
        description="own: a tokenizer trained on the family's dataset; shared: tokenizer_from's champion's "
        "(a distill student always shares its teacher's)",
    )
    tokenizer_from: str | None = Field(default=None, description="the family whose tokenizer a shared policy uses")
    retrain: RetrainPolicy = Field(default_factory=RetrainPolicy)
    incremental: IncrementalPolicy = Field(default_factory=IncrementalPolicy)
    lora: LoraMethod | None = None
    distill: DistillMethod | None = None
    bedrock: BedrockMethod | None = None
    retriever: dict[str, Any] | None = Field(
        default=None,
        description="train a retriever (dual encoder, docs/search.md) on each of the family's tokenizers: "
        "EncoderSettings overrides and optionally questions_uri (the gate's validation questions); None: none",
    )
    deploy: list[str] = Field(
        default_factory=lambda: ["default"],
        description="where an approved champion is deployed: 'default' (the platform's DOCLLM_DEPLOY_TARGET) "
        "and/or named targets; [] never deploys it (a micro-model for agents, an experiment)",
    )

    @model_validator(mode="after")
    def _method_settings(self) -> Self:
        needs = {"lora": self.lora, "distill": self.distill, "bedrock-customization": self.bedrock}
        if self.method in needs and needs[self.method] is None:
            key = "bedrock" if self.method == "bedrock-customization" else self.method
            raise ValueError(f"method {self.method} needs a '{key}' section")
        for key, value in (("lora", self.lora), ("distill", self.distill), ("bedrock", self.bedrock)):
            method = "bedrock-customization" if key == "bedrock" else key
            if value is not None and self.method != method:
                raise ValueError(f"a '{key}' section only goes with method {method}, not {self.method}")
        if self.tokenizer_policy == "shared" and not self.tokenizer_from and self.method != "distill":
            raise ValueError("tokenizer_policy shared needs tokenizer_from (the family whose tokenizer is used)")
        return self

    @property
    def data_filter(self) -> DataFilter:
        return DataFilter(services=self.services, paths=self.paths, languages=self.languages)

    @property
    def tokenizer_family(self) -> str | None:
        """The family whose champion's tokenizer this one uses, or None for its own."""
        if self.method == "distill" and self.distill is not None:
            return self.distill.teacher_family
        return self.tokenizer_from if self.tokenizer_policy == "shared" else None

    @property
    def config_sha256(self) -> str:
        """Digest of the family's whole configuration: recorded with each run it starts."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

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
    _check_references(out, source)
    return out


def _check_references(families: dict[str, ModelFamily], source: str) -> None:
    """A family naming another (a LoRA base, a teacher, a shared tokenizer) must name one that exists."""
    for fam in families.values():
        refs = {
            "lora.base_family": fam.lora.base_family if fam.lora else None,
            "distill.teacher_family": fam.distill.teacher_family if fam.distill else None,
            "tokenizer_from": fam.tokenizer_from,
        }
        for field, ref in refs.items():
            if ref is not None and (ref not in families or ref == fam.name):
                raise TrainingConfigError(f"families.{fam.name}.{field}", f"names no other family: {ref!r}")


def config_version(text: str | None = None) -> str:
    """The version of the families document: its ``version`` key and the sha256 of its text (12 hex)."""
    text = families_text()[0] if text is None else text
    doc = yaml.safe_load(text) or {}
    return f"{doc.get('version', 1)}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@cache
def _packaged() -> str:
    return resources.files("docllm.training").joinpath("families.yaml").read_text(encoding="utf-8")


#: A families file used instead of the packaged one (an organisation's own families, a test's).
FAMILIES_FILE_ENV = "DOCLLM_FAMILIES_FILE"


def families_text() -> tuple[str, str]:
    """The families document in force and where it came from: ``$DOCLLM_FAMILIES_FILE`` or the package."""
    path = os.environ.get(FAMILIES_FILE_ENV)
    if path:
        return Path(path).read_text(encoding="utf-8"), path
    return _packaged(), "families.yaml"


def load_families(path: Path | None = None) -> dict[str, ModelFamily]:
    """Every family from ``path``, else ``$DOCLLM_FAMILIES_FILE``, else the packaged ``families.yaml``."""
    if path is None:
        text, source = families_text()
        return parse_families(text, source=source)
    return parse_families(path.read_text(encoding="utf-8"), source=str(path))


def family(name: str, path: Path | None = None) -> ModelFamily:
    """The family called ``name``; :class:`UnknownFamilyError` (permanent: a request naming it fails
    at once, with the known names) when there is none."""
    families = load_families(path)
    try:
        return families[name]
    except KeyError:
        raise UnknownFamilyError(name, sorted(families)) from None
