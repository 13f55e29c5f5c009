"""BedrockCustomizer on botocore's Stubber (moto has no Bedrock model customization): every request
is validated against the ``bedrock`` service model (shapes, required members, lengths by botocore;
the string patterns, which botocore does not check, by the last test here)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from pydantic import ValidationError

from docllm.adapters.aws.bedrock_customization import BedrockCustomizer
from docllm.customize.request import customization_request
from docllm.exceptions import ConfigurationError, ConflictError, NotFoundError, PermanentError, TransientError
from docllm.ports.customization import CustomizationSpec
from docllm.ports.jobs import VpcConfig
from tests.integration.aws.conftest import REGION

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/docllm-dev-bedrock-customization"
KMS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
JOB = "docllm-dev-cust-s3-bedrock-0123456789abcdef-1"
JOB_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-customization-job/amazon.titan-text-lite-v1:0:4k/abcdefghijkl"
MODEL_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/amazon.titan-text-lite-v1:0:4k/mnopqrstuvwx"
BASE = "amazon.titan-text-lite-v1:0:4k"
DATA = "s3://docllm-artifacts/customizations/s3-bedrock/" + JOB + "/"


def spec(**overrides: Any) -> CustomizationSpec:
    base: dict[str, Any] = {
        "job_name": JOB,
        "custom_model_name": JOB,
        "base_model_identifier": BASE,
        "customization_type": "FINE_TUNING",
        "training_uri": DATA + "train.jsonl",
        "validation_uri": DATA + "validation.jsonl",
        "output_uri": DATA + "output/",
        "hyperparameters": {"epochCount": "2", "batchSize": "1", "learningRate": "0.00001"},
    }
    return CustomizationSpec(**{**base, **overrides})


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("bedrock", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def customizer(client: Any, **kw: Any) -> BedrockCustomizer:
    return BedrockCustomizer(role_arn=kw.pop("role_arn", ROLE), client=client, **kw)


def job(status: str, **extra: Any) -> dict[str, Any]:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return {
        "jobArn": JOB_ARN,
        "jobName": JOB,
        "outputModelName": JOB,
        "roleArn": ROLE,
        "status": status,
        "creationTime": now,
        "baseModelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{BASE}",
        "trainingDataConfig": {"s3Uri": DATA + "train.jsonl"},
        "validationDataConfig": {"validators": [{"s3Uri": DATA + "validation.jsonl"}]},
        "outputDataConfig": {"s3Uri": DATA + "output/"},
        **extra,
    }


def test_submit_sends_the_whole_request_with_key_vpc_and_validation(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    vpc = VpcConfig(subnets=["subnet-0abc"], security_group_ids=["sg-0abc"])
    stub.add_response(
        "create_model_customization_job",
        {"jobArn": JOB_ARN},
        expected_params={
            "jobName": JOB,
            "customModelName": JOB,
            "roleArn": ROLE,
            "clientRequestToken": JOB,
            "baseModelIdentifier": BASE,
            "customizationType": "FINE_TUNING",
            "trainingDataConfig": {"s3Uri": DATA + "train.jsonl"},
            "validationDataConfig": {"validators": [{"s3Uri": DATA + "validation.jsonl"}]},
            "outputDataConfig": {"s3Uri": DATA + "output/"},
            "hyperParameters": {"epochCount": "2", "batchSize": "1", "learningRate": "0.00001"},
            "customModelKmsKeyId": KMS,
            "vpcConfig": {"subnetIds": ["subnet-0abc"], "securityGroupIds": ["sg-0abc"]},
        },
    )
    assert customizer(client, kms_key_id=KMS, vpc=vpc).submit(spec()) == JOB_ARN


def test_continued_pretraining_without_validation_key_or_vpc_sends_only_what_applies(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stub = stubbed
    stub.add_response(
        "create_model_customization_job",
        {"jobArn": JOB_ARN},
        expected_params={
            "jobName": JOB,
            "customModelName": JOB,
            "roleArn": ROLE,
            "clientRequestToken": JOB,
            "baseModelIdentifier": BASE,
            "customizationType": "CONTINUED_PRE_TRAINING",
            "trainingDataConfig": {"s3Uri": DATA + "train.jsonl"},
            "outputDataConfig": {"s3Uri": DATA + "output/"},
            "hyperParameters": {},
        },
    )
    cpt = spec(customization_type="CONTINUED_PRE_TRAINING", validation_uri=None, hyperparameters={})
    assert customizer(client).submit(cpt) == JOB_ARN


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ConflictException", 409, ConflictError),
        ("ValidationException", 400, PermanentError),
        ("AccessDeniedException", 403, PermanentError),
        ("ThrottlingException", 429, TransientError),
        ("InternalServerException", 500, TransientError),
    ],
)
def test_submit_errors_are_typed(stubbed: tuple[Any, Stubber], code: str, status: int, error: type) -> None:
    client, stub = stubbed
    stub.add_client_error("create_model_customization_job", service_error_code=code, http_status_code=status)
    with pytest.raises(error):
        customizer(client).submit(spec())


def test_describe_maps_a_completed_job_with_its_model_and_losses(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_response(
        "get_model_customization_job",
        job(
            "Completed",
            outputModelArn=MODEL_ARN,
            endTime=datetime(2025, 1, 2, tzinfo=UTC),
            trainingMetrics={"trainingLoss": 1.25},
            validationMetrics=[{"validationLoss": 1.5}],
        ),
        expected_params={"jobIdentifier": JOB},
    )
    got = customizer(client).describe(JOB)
    assert (got.status, got.custom_model_arn, got.custom_model_name) == ("Completed", MODEL_ARN, JOB)
    assert (got.training_loss, got.validation_loss) == (1.25, 1.5)
    assert got.base_model_arn and got.base_model_arn.endswith(BASE)


def test_describe_of_a_failed_job_carries_bedrocks_reason(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_response("get_model_customization_job", job("Failed", failureMessage="train.jsonl line 3: not JSON"))
    got = customizer(client).describe(JOB)
    assert (got.status, got.failure_message, got.custom_model_arn) == ("Failed", "train.jsonl line 3: not JSON", None)


def test_describe_of_an_unknown_job_is_not_found(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_client_error(
        "get_model_customization_job",
        service_error_code="ResourceNotFoundException",
        http_status_code=404,
        expected_params={"jobIdentifier": "nope"},
    )
    with pytest.raises(NotFoundError):
        customizer(client).describe("nope")


def test_stop_asks_only_a_running_job(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_response("get_model_customization_job", job("InProgress"), expected_params={"jobIdentifier": JOB})
    stub.add_response("stop_model_customization_job", {}, expected_params={"jobIdentifier": JOB})
    customizer(client).stop(JOB)
    stub.assert_no_pending_responses()
    stub.add_response("get_model_customization_job", job("Completed", outputModelArn=MODEL_ARN))
    customizer(client).stop(JOB)  # nothing to stop: no StopModelCustomizationJob call (the Stubber would refuse it)


def test_stop_racing_the_end_of_the_job_is_not_an_error(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    stub.add_response("get_model_customization_job", job("InProgress"))
    stub.add_client_error("stop_model_customization_job", service_error_code="ConflictException", http_status_code=409)
    customizer(client).stop(JOB)


def test_no_service_role_is_a_configuration_error_before_any_call(stubbed: tuple[Any, Stubber]) -> None:
    client, _ = stubbed
    with pytest.raises(ConfigurationError, match="DOCLLM_BEDROCK_CUSTOMIZATION_ROLE_ARN"):
        customizer(client, role_arn=None).submit(spec())
    with pytest.raises(ConfigurationError):
        customizer(client, role_arn="not-an-arn").submit(spec())


@pytest.mark.parametrize(
    "bad",
    [
        {"job_name": "-starts-with-hyphen"},
        {"job_name": "x" * 64},
        {"custom_model_name": "double--hyphen"},
        {"training_uri": "s3://b/train.json"},
        {"output_uri": "s3://b/no-trailing-slash"},
    ],
)
def test_specs_bedrock_would_refuse_are_refused_here(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        spec(**bad)


def _pattern(shape_name: str) -> re.Pattern[str]:
    model = botocore.session.get_session().get_service_model("bedrock")
    return re.compile(f"^(?:{model.shape_for(shape_name).metadata['pattern']})$")


def test_request_strings_match_the_service_models_patterns() -> None:
    # botocore validates types, required members and lengths; the patterns are Bedrock's server side.
    request = customization_request(spec(), role_arn=ROLE, kms_key_id=KMS)
    checks = {
        "jobName": "JobName",
        "customModelName": "CustomModelName",
        "clientRequestToken": "IdempotencyToken",
        "roleArn": "RoleArn",
        "baseModelIdentifier": "BaseModelIdentifier",
        "customModelKmsKeyId": "KmsKeyId",
    }
    for field, shape in checks.items():
        assert _pattern(shape).match(request[field]), (field, request[field])
    for uri in (request["trainingDataConfig"]["s3Uri"], request["outputDataConfig"]["s3Uri"]):
        assert _pattern("S3Uri").match(uri), uri
