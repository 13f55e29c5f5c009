"""``result.json``: what a training job reports, published last beside the export (light, no torch).

Example
-------
>>> TrainingJobResult.model_validate_json(Path("result.json").read_text()).final_val_loss  # doctest: +SKIP
3.41
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TrainingJobResult(BaseModel):
    model_version: str
    family: str | None
    dataset_version: str | None = None
    tokenizer_version: str | None = None
    variant: str
    hf_architecture: str
    n_params: int = Field(description="non-embedding parameters")
    final_train_loss: float | None
    final_val_loss: float | None
    best_val_loss: float | None
    unigram_val_loss: float | None = Field(default=None, description="baseline: unigram cross-entropy on val")
    tokens_seen: int
    steps: int
    elapsed_s: float
    tokens_per_s: float
    world_size: int
    device: str
    resumed_from_step: int | None = None
    export_path: str = Field(default="hf", description="relative to the published prefix")
    model_config_: dict[str, Any] = Field(alias="model_config")
    train_config: dict[str, Any]
    provenance: dict[str, Any] = Field(
        default_factory=dict, description="code (repository, commit, dirty) and environment (image or lock hash)"
    )

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())
