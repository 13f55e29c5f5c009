"""``result.json``: what a training job reports, published last beside the export (light, no torch).

Example
-------
>>> TrainingJobResult.model_validate_json(Path("result.json").read_text()).final_val_loss  # doctest: +SKIP
3.41
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TeacherRecord(BaseModel):
    """The teacher a distilled model was trained from: what its manifest names among the inputs."""

    model_version: str | None = Field(description="the teacher's model version, when the launcher named it")
    uri: str = Field(description="s3:// prefix the teacher was read from (its export or checkpoint directory)")
    manifest_sha256: str | None = Field(default=None, description="sha256 of the teacher's compliance manifest")
    weights_file: str = Field(description="the weights file under ``uri``: model.safetensors or ckpt.pt")
    weights_sha256: str = Field(description="sha256 of that file, as the job read it")
    n_params: int
    model_config_: dict[str, Any] = Field(alias="model_config")

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())


class InitRecord(BaseModel):
    """The weights a continued run started from (the job's ``init`` channel): the launcher records
    which model version and prefix that was (the job's context); the job, what it read."""

    weights_file: str = Field(description="model.safetensors (an export) or ckpt.pt (a checkpoint)")
    weights_sha256: str = Field(description="sha256 of that file, as the job read it")


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
    teacher: TeacherRecord | None = Field(default=None, description="distillation only: the teacher")
    init: InitRecord | None = Field(default=None, description="continued runs only: the initial weights")

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())
