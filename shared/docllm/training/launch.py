"""The training job's :class:`~docllm.ports.jobs.JobSpec`, built from a model family (light, no torch).

Example
-------
>>> from docllm.training.families import load_families
>>> spec = train_job_spec(family=load_families()["tiny-s3"], dataset_version="ds-1",
...     tokenizer_version="tok-1", shards_uri="s3://art/shards/ds-1/", tokenizer_uri="s3://art/tokenizers/tok-1/",
...     artifact_bucket="art", job_name="tiny-s3-ds-1")
>>> spec.image, spec.entry_point, spec.hyperparameters["family"]
('train', 'docllm.jobs.train_job', 'tiny-s3')
"""

from __future__ import annotations

import json
from typing import Any

from docllm.ports.jobs import JobSpec
from docllm.training.exceptions import TrainingConfigError
from docllm.training.families import ModelFamily

ENTRY_POINT = "docllm.jobs.train_job"


def train_job_spec(
    *,
    family: ModelFamily,
    dataset_version: str,
    tokenizer_version: str,
    shards_uri: str,
    tokenizer_uri: str,
    artifact_bucket: str,
    job_name: str,
    model_version: str | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> JobSpec:
    """A SageMaker-shaped job that trains ``family`` on one dataset/tokenizer version.

    Artefacts go to ``s3://{artifact_bucket}/models/{family}/{model_version}/`` (the job
    publishes ``hf/`` and ``result.json`` there), checkpoints to ``.../checkpoints/``.
    KMS and VPC settings are added by the SageMaker adapter. A training config with ``distill``
    adds the ``teacher`` channel (its ``teacher_uri``), which the job loads the teacher from.
    """
    version = model_version or job_name
    prefix = f"s3://{artifact_bucket}/models/{family.name}/{version}"
    train_cfg = family.train_config(**(train_overrides or {}))  # validates before anything starts
    hyperparameters = {
        "family": family.name,
        "model_version": version,
        "dataset_version": dataset_version,
        "tokenizer_version": tokenizer_version,
        "output_uri": f"{prefix}/",
        "train_config": train_cfg.model_dump_json(exclude_defaults=True),
    }
    if model_overrides:
        hyperparameters["model_config"] = json.dumps(model_overrides)
    channels = {"shards": shards_uri, "tokenizer": tokenizer_uri}
    if train_cfg.distill is not None:
        if not train_cfg.distill.teacher_uri.startswith("s3://"):
            raise TrainingConfigError("distill.teacher_uri", "must be an s3:// prefix (the job's teacher channel)")
        channels["teacher"] = train_cfg.distill.teacher_uri
    runtime = family.max_runtime_s
    return JobSpec(
        name=job_name,
        image="train",
        entry_point=ENTRY_POINT,
        hyperparameters=hyperparameters,
        channels=channels,
        output_uri=f"{prefix}/sagemaker/",
        checkpoint_uri=f"{prefix}/checkpoints/",
        instance_type=family.instance_type,
        instance_count=family.instance_count,
        volume_gb=family.volume_gb,
        max_runtime_s=runtime,
        spot=family.spot,
        max_wait_s=(family.max_wait_minutes * 60 if family.max_wait_minutes else 2 * runtime) if family.spot else None,
        tags={"docllm:family": family.name, "docllm:dataset": dataset_version, **(tags or {})},
    )
