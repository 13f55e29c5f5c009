"""Amazon Bedrock model customization: ``CreateModelCustomizationJob`` and friends.

The job runs as the Bedrock service role (``BedrockCustomizationRole`` in the template: trusted by
bedrock.amazonaws.com for this account's customization jobs, reading ``customizations/`` and
writing the job's output prefix), the custom model is encrypted with the platform's key, and the
data is read through the platform's VPC when it has one. Errors are docllm's typed errors
(:mod:`docllm.adapters.aws.errors`): a name taken is a :class:`~docllm.exceptions.ConflictError`,
a job Bedrock does not know a :class:`~docllm.exceptions.NotFoundError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3

from docllm.adapters.aws.errors import AwsConflictError, AwsNotFoundError, aws_errors
from docllm.customize.request import customization_request
from docllm.exceptions import NotFoundError
from docllm.ports.customization import CustomizationJob, CustomizationSpec, ModelCustomizer
from docllm.ports.jobs import VpcConfig

if TYPE_CHECKING:
    from mypy_boto3_bedrock import BedrockClient


class BedrockCustomizer(ModelCustomizer):
    """Start, follow and stop Bedrock customization jobs.

    Parameters
    ----------
    role_arn:
        The service role Bedrock assumes to read the data and write the output.
    kms_key_id:
        Encrypts the custom model (``customModelKmsKeyId``); None: Bedrock's own key.
    vpc:
        Subnets and security groups Bedrock reads the data through; None: no VPC.
    client:
        A boto3 ``bedrock`` client; built on first use when omitted.
    """

    def __init__(
        self,
        *,
        role_arn: str | None,
        kms_key_id: str | None = None,
        vpc: VpcConfig | None = None,
        client: BedrockClient | None = None,
    ) -> None:
        self.role_arn = role_arn
        self.kms_key_id = kms_key_id
        self.vpc = vpc
        self._client = client

    @property
    def client(self) -> BedrockClient:
        if self._client is None:
            self._client = boto3.client("bedrock")
        return self._client

    def submit(self, spec: CustomizationSpec) -> str:
        request = customization_request(spec, role_arn=self.role_arn, kms_key_id=self.kms_key_id, vpc=self.vpc)
        # A job of this name already existing is ConflictException: a ConflictError the caller adopts.
        with aws_errors(f"Bedrock CreateModelCustomizationJob {spec.job_name}"):
            return str(self.client.create_model_customization_job(**request)["jobArn"])

    def describe(self, job: str) -> CustomizationJob:
        try:
            with aws_errors(f"Bedrock GetModelCustomizationJob {job}"):
                found: dict[str, Any] = dict(self.client.get_model_customization_job(jobIdentifier=job))
        except AwsNotFoundError as e:
            raise NotFoundError(f"no Bedrock model customization job {job!r}") from e
        validation = found.get("validationMetrics") or []
        return CustomizationJob(
            job_arn=found["jobArn"],
            job_name=found["jobName"],
            status=found["status"],
            custom_model_arn=found.get("outputModelArn"),
            custom_model_name=found.get("outputModelName"),
            base_model_arn=found.get("baseModelArn"),
            failure_message=found.get("failureMessage"),
            training_loss=(found.get("trainingMetrics") or {}).get("trainingLoss"),
            # One entry per validator; we give one.
            validation_loss=validation[0].get("validationLoss") if validation else None,
        )

    def stop(self, job: str) -> None:
        current = self.describe(job)
        if current.status not in ("InProgress",):
            return  # ended (or stopping) already: nothing to ask
        try:
            with aws_errors(f"Bedrock StopModelCustomizationJob {job}"):
                self.client.stop_model_customization_job(jobIdentifier=job)
        except AwsConflictError:
            return  # it ended between the describe and the stop
