"""``CreateModelCustomizationJob``'s parameters for a :class:`CustomizationSpec` (pure).

The job name doubles as the client request token (Bedrock's idempotency token: a retried create
with the same token is the same job), so a redelivered launch cannot start a second job. The
custom model is encrypted with the platform's key (``customModelKmsKeyId``) and, in VPC mode,
Bedrock reads the data through the platform's subnets and security groups.

>>> spec = CustomizationSpec(job_name="docllm-dev-cust-s3-1", custom_model_name="docllm-dev-cust-s3-1",
...     base_model_identifier="amazon.titan-text-lite-v1:0:4k", customization_type="FINE_TUNING",
...     training_uri="s3://art/customizations/s3/j/train.jsonl", output_uri="s3://art/customizations/s3/j/output/",
...     hyperparameters={"epochCount": "2"})
>>> req = customization_request(spec, role_arn="arn:aws:iam::123456789012:role/r")
>>> req["clientRequestToken"] == req["jobName"], req["trainingDataConfig"], "validationDataConfig" in req
(True, {'s3Uri': 's3://art/customizations/s3/j/train.jsonl'}, False)
"""

from __future__ import annotations

import re
from typing import Any

from docllm.exceptions import ConfigurationError
from docllm.ports.customization import CustomizationSpec
from docllm.ports.jobs import VpcConfig

#: Bedrock's patterns (botocore's service model); the Stubber does not check patterns, so we do.
_ROLE = re.compile(r"^arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+$")
_TOKEN = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?$")


def customization_request(
    spec: CustomizationSpec,
    *,
    role_arn: str | None,
    kms_key_id: str | None = None,
    vpc: VpcConfig | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``bedrock.create_model_customization_job``.

    Raises
    ------
    ConfigurationError
        No service role, or one that is not an IAM role ARN.
    """
    if not role_arn or not _ROLE.match(role_arn):
        raise ConfigurationError(
            f"Bedrock customization needs its service role (DOCLLM_BEDROCK_CUSTOMIZATION_ROLE_ARN), got {role_arn!r}"
        )
    token = spec.job_name.replace(".", "-").replace("+", "-")
    if not _TOKEN.match(token):
        raise ConfigurationError(f"job name {spec.job_name!r} cannot serve as Bedrock's client request token")
    request: dict[str, Any] = {
        "jobName": spec.job_name,
        "customModelName": spec.custom_model_name,
        "roleArn": role_arn,
        "clientRequestToken": token,
        "baseModelIdentifier": spec.base_model_identifier,
        "customizationType": spec.customization_type,
        "trainingDataConfig": {"s3Uri": spec.training_uri},
        "outputDataConfig": {"s3Uri": spec.output_uri},
        "hyperParameters": dict(spec.hyperparameters),
    }
    if spec.validation_uri:
        request["validationDataConfig"] = {"validators": [{"s3Uri": spec.validation_uri}]}
    if kms_key_id:
        request["customModelKmsKeyId"] = kms_key_id
    if vpc is not None and vpc.subnets:
        request["vpcConfig"] = {"subnetIds": list(vpc.subnets), "securityGroupIds": list(vpc.security_group_ids)}
    return request
