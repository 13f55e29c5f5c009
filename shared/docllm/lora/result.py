"""``result.json`` of a LoRA job: a training job's result, plus what only LoRA has (light, no torch).

It *is* a :class:`~docllm.training.result.TrainingJobResult` (same fields, ``export_path`` the merged
export ``hf/``), so the train stage's completion reads it as it reads any training job's and announces
"Model Trained" with the merged export, and the evaluation and the gate treat the model like any
other. The LoRA fields say what the model is made of: the base model (its URI, version and file
digests), the adapter (``adapter/``, its configuration and trainable parameters), the data (counts,
template, file digests) and, when the training sections were subset, what was kept
(``subset.json``: every kept section with its scores; the summary here).

Example
-------
>>> LoraJobResult.model_validate_json(Path("result.json").read_text()).adapter_path  # doctest: +SKIP
'adapter'
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from docllm.lora.data import DataSummary
from docllm.training.result import TrainingJobResult


class BaseModelRecord(BaseModel):
    """The base model the adapter was trained on."""

    uri: str = Field(description="s3:// prefix it was read from")
    version: str | None = Field(default=None, description="its model version, when one of the platform's own")
    architecture: str
    files: dict[str, str] = Field(description="file name -> sha256 of every file of the directory")


class LoraJobResult(TrainingJobResult):
    method: Literal["lora"] = "lora"
    adapter_path: str = Field(default="adapter", description="the PEFT adapter, relative to the published prefix")
    data_path: str = Field(default="data", description="train.jsonl and validation.jsonl, relative likewise")
    subset_path: str | None = Field(default=None, description="subset.json, when the sections were subset")
    base_model: BaseModelRecord
    trainable_params: int = Field(description="parameters of the adapter")
    initial_val_loss: float | None = Field(default=None, description="the base model's completion loss on val")
    completion_tokens_seen: int = Field(description="tokens the loss was computed on (completions and EOS)")
    data: DataSummary
    subset: dict[str, Any] | None = Field(default=None, description="SubsetResult.summary(), when subset")
    dropped_too_long: int = Field(default=0, description="pairs longer than max_length once tokenized")


__all__ = ["BaseModelRecord", "LoraJobResult"]
