"""Bedrock's "Model Customization Job State Change" event (source ``aws.bedrock``, default bus).

Shape from the Bedrock user guide ("How EventBridge for Amazon Bedrock works"): the detail names
the job (``jobName``, ``jobArn``), its ``jobStatus`` and, as it progresses, the output model
(``outputModelName``, ``outputModelArn``) and a ``failureMessage``. Delivery is best effort, so
the customize stage reads the outcome back with ``GetModelCustomizationJob`` rather than trusting
the event's fields; unknown fields are kept (AWS adds fields without notice).
"""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field

DETAIL_TYPE = "Model Customization Job State Change"


class CustomizationJobStateDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    jobName: str  # noqa: N815 - AWS's field names
    jobArn: str | None = None  # noqa: N815
    jobStatus: Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]  # noqa: N815
    outputModelName: str | None = None  # noqa: N815
    outputModelArn: str | None = None  # noqa: N815
    failureMessage: str | None = None  # noqa: N815


class CustomizationJobStateChangeEvent(EventBridgeModel):
    detail_type: Literal["Model Customization Job State Change"] = Field(alias="detail-type")
    source: Literal["aws.bedrock"]
    detail: CustomizationJobStateDetail
