"""BedrockImporter: the export inspected on moto S3, the import job on botocore's Stubber
(moto has no Custom Model Import); every Bedrock request is checked against the service model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from docllm.adapters.aws.bedrock_import import BedrockImporter, UnsupportedExportError
from docllm.deploy import DeploymentSpec, bedrock_import_request
from docllm.exceptions import NotFoundError, PermanentError
from tests.integration.aws.conftest import REGION

ACCOUNT = "123456789012"
BUCKET = "docllm-artifacts"
PREFIX = "models/tiny/v7/hf/"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/docllm-dev-bedrock-import"
KMS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
JOB_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-import-job/abcdefghijkl"
MODEL_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:imported-model/mnopqrstuvwx"
LLAMA_FILES = ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def spec(**overrides: Any) -> DeploymentSpec:
    base: dict[str, Any] = {
        "model_version": "v7",
        "family": "tiny",
        "export_uri": f"s3://{BUCKET}/{PREFIX}",
        "target": "bedrock",
        "role_arn": ROLE,
        "kms_key_id": KMS,
    }
    return DeploymentSpec(**{**base, **overrides})


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


def put_export(s3: Any, architecture: str = "LlamaForCausalLM", files: tuple[str, ...] = LLAMA_FILES) -> None:
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "config.json", Body=json.dumps({"architectures": [architecture]}))
    for name in files:
        s3.put_object(Bucket=BUCKET, Key=PREFIX + name, Body=b"x")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "extra/model.safetensors", Body=b"x")  # not part of the import


@pytest.fixture
def bedrock(s3: Any) -> Iterator[tuple[BedrockImporter, Stubber]]:
    client = boto3.client("bedrock", region_name=REGION)
    with Stubber(client) as stub:  # Stubber validates each expected request against the service model
        yield BedrockImporter(client=client, s3_client=s3), stub
        stub.assert_no_pending_responses()


def job_not_found(stub: Stubber, name: str) -> None:
    stub.add_client_error(
        "get_model_import_job",
        service_error_code="ResourceNotFoundException",
        http_status_code=404,
        expected_params={"jobIdentifier": name},
    )


def job(status: str, **extra: Any) -> dict[str, Any]:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return {
        "jobArn": JOB_ARN,
        "jobName": "docllm-dev-tiny-x",
        "importedModelName": "docllm-dev-tiny-x",
        "roleArn": ROLE,
        "modelDataSource": {"s3DataSource": {"s3Uri": f"s3://{BUCKET}/{PREFIX}"}},
        "status": status,
        "creationTime": now,
        **extra,
    }


def test_llama_export_starts_an_encrypted_import_job(bedrock: tuple[BedrockImporter, Stubber], s3: Any) -> None:
    importer, stub = bedrock
    put_export(s3)
    request = bedrock_import_request(spec(), stage="dev")
    job_not_found(stub, request["jobName"])
    stub.add_response("create_model_import_job", {"jobArn": JOB_ARN}, request)

    record = importer.start_import(spec(), stage="dev")

    assert record.target == "bedrock" and record.status == "InProgress"
    assert record.endpoint == JOB_ARN
    assert record.details["imported_model_name"] == request["importedModelName"]
    assert request["importedModelKmsKeyId"] == KMS


def test_gpt_neox_export_is_refused_before_any_job_starts(bedrock: tuple[BedrockImporter, Stubber], s3: Any) -> None:
    importer, stub = bedrock
    put_export(s3, architecture="GPTNeoXForCausalLM")
    job_not_found(stub, bedrock_import_request(spec(), stage="dev")["jobName"])

    with pytest.raises(UnsupportedExportError, match="GPTNeoXForCausalLM") as caught:
        importer.start_import(spec(), stage="dev")
    assert isinstance(caught.value, PermanentError)


def test_export_without_tokenizer_files_is_refused_naming_them(
    bedrock: tuple[BedrockImporter, Stubber], s3: Any
) -> None:
    importer, stub = bedrock
    put_export(s3, files=("model.safetensors",))
    job_not_found(stub, bedrock_import_request(spec(), stage="dev")["jobName"])

    with pytest.raises(UnsupportedExportError, match=r"missing tokenizer\.json, tokenizer_config\.json"):
        importer.start_import(spec(), stage="dev")


def test_empty_prefix_is_refused(bedrock: tuple[BedrockImporter, Stubber]) -> None:
    importer, stub = bedrock
    job_not_found(stub, bedrock_import_request(spec(), stage="dev")["jobName"])
    with pytest.raises(UnsupportedExportError, match=r"missing config\.json"):
        importer.start_import(spec(), stage="dev")


def test_redelivery_finds_the_job_instead_of_starting_another(bedrock: tuple[BedrockImporter, Stubber]) -> None:
    importer, stub = bedrock
    name = bedrock_import_request(spec(), stage="dev")["jobName"]
    stub.add_response("get_model_import_job", job("Completed", importedModelArn=MODEL_ARN), {"jobIdentifier": name})

    record = importer.start_import(spec(), stage="dev")  # no create_model_import_job stubbed: none may be sent

    assert record.status == "Completed" and record.details["reused"] is True
    assert record.endpoint == MODEL_ARN
    assert record.details["imported_model_arn"] == MODEL_ARN
    assert record.finished_at is not None


def test_status_follows_the_job_to_the_imported_model(bedrock: tuple[BedrockImporter, Stubber]) -> None:
    importer, stub = bedrock
    stub.add_response("get_model_import_job", job("InProgress"), {"jobIdentifier": JOB_ARN})
    stub.add_response("get_model_import_job", job("Completed", importedModelArn=MODEL_ARN), {"jobIdentifier": JOB_ARN})

    assert importer.status(JOB_ARN) == ("InProgress", None)
    assert importer.status(JOB_ARN) == ("Completed", MODEL_ARN)


def test_status_of_an_unknown_job_is_not_found(bedrock: tuple[BedrockImporter, Stubber]) -> None:
    importer, stub = bedrock
    job_not_found(stub, JOB_ARN)
    with pytest.raises(NotFoundError):
        importer.status(JOB_ARN)


def test_validation_error_from_bedrock_is_permanent(bedrock: tuple[BedrockImporter, Stubber], s3: Any) -> None:
    importer, stub = bedrock
    put_export(s3)
    request = bedrock_import_request(spec(), stage="dev")
    job_not_found(stub, request["jobName"])
    stub.add_client_error("create_model_import_job", service_error_code="ValidationException", http_status_code=400)

    with pytest.raises(PermanentError, match="CreateModelImportJob"):
        importer.start_import(spec(), stage="dev")
