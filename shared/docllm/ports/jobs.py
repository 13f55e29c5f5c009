"""Job runner port: SageMaker training jobs on AWS, subprocesses locally.

Both follow the SageMaker container contract (``/opt/ml/input/config``,
channels, ``SM_*`` variables, model and checkpoint directories) and both end
with a "SageMaker Training Job State Change" event on the bus.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from pydantic import BaseModel, Field

JobStatus = Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]


class VpcConfig(BaseModel):
    subnets: list[str]
    security_group_ids: list[str]


class JobSpec(BaseModel):
    """Everything needed to start one training-style job, on either adapter."""

    name: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", description="job name, unique")
    image: Literal["tokenizer", "train", "evaluate"] = Field(description="which containers/ image runs it")
    entry_point: str = Field(description="python module run as the job, e.g. docllm.jobs.tokenizer_job")
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    channels: dict[str, str] = Field(default_factory=dict, description="channel name -> s3:// prefix")
    output_uri: str = Field(description="s3:// prefix for model artefacts (model.tar.gz)")
    checkpoint_uri: str | None = None
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = Field(default=1, ge=1)
    volume_gb: int = Field(default=50, ge=1)
    max_runtime_s: int = Field(default=24 * 3600, ge=1)
    spot: bool = False
    max_wait_s: int | None = None
    vpc: VpcConfig | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class JobDescription(BaseModel):
    name: str
    status: JobStatus
    failure_reason: str | None = None
    model_artifacts_uri: str | None = None
    hyperparameters: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class JobRunner(ABC):
    @abstractmethod
    def submit(self, spec: JobSpec) -> str:
        """Start the job; return its ARN (or a local equivalent)."""

    @abstractmethod
    def describe(self, name: str) -> JobDescription: ...

    @abstractmethod
    def stop(self, name: str) -> None: ...
