"""Models of the AWS events the platform consumes, built on Powertools' parser models.

The S3 and SQS models are Powertools' own; CloudWatch alarm and SageMaker
state-change events (EventBridge shape) have no Powertools model, so they are
defined here on Powertools' ``EventBridgeModel`` envelope.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    S3EventNotificationEventBridgeModel,
    SqsModel,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    """The fields of "SageMaker Model Package State Change" the platform reads (AWS sends more).

    ``CreationTime`` and ``LastModifiedTime`` arrive as ISO 8601 strings or as epoch numbers
    (AWS's published samples show both); either way they are kept as ISO strings.
    """

    model_config = ConfigDict(extra="allow")

    ModelPackageGroupName: str
    ModelPackageVersion: int | None = None
    ModelPackageArn: str
    ModelPackageStatus: str | None = None
    ModelApprovalStatus: ApprovalStatus
    ApprovalDescription: str | None = None
    CustomerMetadataProperties: dict[str, str] = Field(default_factory=dict)
    MetadataProperties: dict[str, str] = Field(default_factory=dict)
    CreationTime: str | None = None
    LastModifiedTime: str | None = None
    LastModifiedBy: dict[str, Any] | None = None

    @field_validator("CreationTime", "LastModifiedTime", mode="before")
    @classmethod
    def _iso_time(cls, value: Any) -> Any:
        return event_time(value)


#: Epoch numbers at least this large are milliseconds (as AWS's samples send them): as seconds
#: they would be past the year 5000, as milliseconds they are after 1973.
_EPOCH_MS_FROM = 100_000_000_000


def event_time(value: Any) -> Any:
    """An event time as an ISO 8601 string: epoch numbers (seconds or milliseconds, also as
    digit strings) are converted; strings are kept as sent; anything else is left for pydantic
    to refuse.

    >>> event_time(1592411992203.0), event_time("1583831889050"), event_time("2021-02-24T17:00:14Z")
    ('2020-06-17T16:39:52.203Z', '2020-03-10T09:18:09.050Z', '2021-02-24T17:00:14Z')
    """
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = value / 1000 if abs(value) >= _EPOCH_MS_FROM else value
        try:
            iso = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
        except (OverflowError, OSError, ValueError):
            return value  # out of any calendar: not a time
        return iso.replace("+00:00", "Z")
    return value


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
