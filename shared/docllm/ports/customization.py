"""Model customization port: a provider's managed fine-tuning of its own base model.

On AWS it is Amazon Bedrock (``CreateModelCustomizationJob``, ``GetModelCustomizationJob``,
``StopModelCustomizationJob``); there is no local equivalent, since the base models and the
training are Bedrock's: the local adapter refuses with the reason.

A job ends with Bedrock's "Model Customization Job State Change" event on the default bus, which
the customize stage follows (``service_layer/customize.py``); :meth:`ModelCustomizer.describe` is
what it (and a poller) trusts for the outcome, since events are delivered on a best-effort basis.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CustomizationStatus = Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]


class CustomizationSpec(BaseModel):
    """One customization job; the adapter adds the account's parts (service role, KMS key, VPC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_name: str = Field(
        min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9+\-.])*$", description="unique per job"
    )
    custom_model_name: str = Field(
        min_length=1, max_length=63, pattern=r"^([0-9a-zA-Z][_-]?){1,63}$", description="the resulting model's name"
    )
    base_model_identifier: str = Field(min_length=1, max_length=2048, description="foundation model id or ARN")
    customization_type: Literal["FINE_TUNING", "CONTINUED_PRE_TRAINING"]
    training_uri: str = Field(pattern=r"^s3://.+\.jsonl$", description="s3:// URI of train.jsonl")
    validation_uri: str | None = Field(default=None, pattern=r"^s3://.+\.jsonl$", description="of validation.jsonl")
    output_uri: str = Field(pattern=r"^s3://.+/$", description="s3:// prefix Bedrock writes its metrics to")
    hyperparameters: dict[str, str] = Field(default_factory=dict, description="Bedrock's names, string values")


class CustomizationJob(BaseModel):
    """What the provider says about a job."""

    job_arn: str
    job_name: str
    status: CustomizationStatus
    custom_model_arn: str | None = Field(default=None, description="the custom model, once Completed")
    custom_model_name: str | None = None
    base_model_arn: str | None = None
    failure_message: str | None = None
    training_loss: float | None = None
    validation_loss: float | None = None


class ModelCustomizer(ABC):
    """Start, follow and stop customization jobs."""

    @abstractmethod
    def submit(self, spec: CustomizationSpec) -> str:
        """Start the job; return its ARN. :class:`~docllm.exceptions.ConflictError` when a job of
        that name exists already (the caller adopts it by :meth:`describe`)."""

    @abstractmethod
    def describe(self, job: str) -> CustomizationJob:
        """The job named ``job`` (name or ARN); :class:`~docllm.exceptions.NotFoundError` when none."""

    @abstractmethod
    def stop(self, job: str) -> None:
        """Ask the job to stop; a job that already ended is left as it is."""
