"""Models of the AWS events the platform consumes, built on Powertools' parser models.

The S3 and SQS models are Powertools' own; CloudWatch alarm and SageMaker
state-change events (EventBridge shape) have no Powertools model, so they are
defined here on Powertools' ``EventBridgeModel`` envelope.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    S3EventNotificationEventBridgeModel,
    SqsModel,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from docllm.exceptions import ContractError

S3ObjectEvent = S3EventNotificationEventBridgeModel


class AlarmState(BaseModel):
    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str | None = None
    reasonData: str | None = None  # noqa: N815 - AWS's field name
    timestamp: str
    actionsSuppressedBy: str | None = None  # noqa: N815


class AlarmStateChangeDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    alarmName: str  # noqa: N815
    state: AlarmState
    previousState: AlarmState  # noqa: N815
    configuration: dict[str, Any] = Field(default_factory=dict)


class AlarmStateChangeEvent(EventBridgeModel):
    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    source: Literal["aws.cloudwatch"]
    detail: AlarmStateChangeDetail


class TrainingJobStateDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    TrainingJobName: str
    TrainingJobArn: str | None = None
    TrainingJobStatus: Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]
    SecondaryStatus: str | None = None
    FailureReason: str | None = None
    HyperParameters: dict[str, str] = Field(default_factory=dict)
    ModelArtifacts: dict[str, str] | None = None
    Tags: dict[str, str] = Field(default_factory=dict)


class TrainingJobStateChangeEvent(EventBridgeModel):
    detail_type: Literal["SageMaker Training Job State Change"] = Field(alias="detail-type")
    source: Literal["aws.sagemaker"]
    detail: TrainingJobStateDetail


class EndpointStateDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    EndpointName: str
    EndpointArn: str | None = None
    EndpointConfigName: str | None = None
    EndpointStatus: str
    FailureReason: str | None = None
    Tags: dict[str, str] = Field(default_factory=dict)


class EndpointStateChangeEvent(EventBridgeModel):
    detail_type: Literal["SageMaker Endpoint State Change"] = Field(alias="detail-type")
    source: Literal["aws.sagemaker"]
    detail: EndpointStateDetail


ApprovalStatus = Literal["Approved", "Rejected", "PendingManualApproval"]


class ModelPackageStateDetail(BaseModel):
    """The fields of "SageMaker Model Package State Change" the platform reads (AWS sends more)."""

    model_config = ConfigDict(extra="allow")

    ModelPackageGroupName: str
    ModelPackageVersion: int | None = None
    ModelPackageArn: str
    ModelPackageStatus: str | None = None
    ModelApprovalStatus: ApprovalStatus
    ApprovalDescription: str | None = None
    CustomerMetadataProperties: dict[str, str] = Field(default_factory=dict)
    MetadataProperties: dict[str, str] = Field(default_factory=dict)
    LastModifiedTime: str | None = None
    LastModifiedBy: dict[str, Any] | None = None


class ModelPackageStateChangeEvent(EventBridgeModel):
    detail_type: Literal["SageMaker Model Package State Change"] = Field(alias="detail-type")
    source: Literal["aws.sagemaker"]
    detail: ModelPackageStateDetail


def eventbridge_bodies(sqs_event: dict[str, Any]) -> list[dict[str, Any]]:
    """The EventBridge events carried by an SQS batch (S3 → EventBridge → SQS → Lambda).

    Raises
    ------
    ContractError
        When the batch or a body is not an EventBridge event.
    """
    try:
        batch = SqsModel.model_validate(sqs_event)
    except ValidationError as e:
        raise ContractError(f"not an SQS event: {e}") from e
    out = []
    for record in batch.Records:
        try:
            body = json.loads(str(record.body))
        except json.JSONDecodeError as e:
            raise ContractError(f"SQS message {record.messageId} body is not JSON") from e
        if not isinstance(body, dict) or "detail-type" not in body:
            raise ContractError(f"SQS message {record.messageId} does not carry an EventBridge event")
        out.append(body)
    return out
