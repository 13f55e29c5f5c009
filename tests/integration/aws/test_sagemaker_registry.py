"""SageMaker registry adapter: every request it sends matches botocore's service model, and the
cases moto cannot show (a group created by someone else first, throttling) behave.

botocore validates types, required members and minimum sizes before sending; SageMaker also
enforces maximum lengths, enums and patterns server-side, and moto checks few of them. So the
requests are captured and held to all of the model's constraints here (patterns with the
``regex`` module, which knows ``\\p{L}``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import regex
from botocore.model import Shape
from botocore.stub import ANY, Stubber
from botocore.validate import validate_parameters

from docllm.adapters.aws.sagemaker_registry import SageMakerModelRegistry, build_create_model_package_request
from docllm.exceptions import NotFoundError, TransientError
from docllm.registry.metadata import client_token
from docllm.registry.models import PackageSpec
from tests.integration.aws.conftest import REGION

GROUP_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:model-package-group/docllm-dev-tiny-s3"


def spec(version: str = "m1", **changes: Any) -> PackageSpec:
    fields: dict[str, Any] = {
        "model_version": version,
        "family": "tiny-s3",
        "export_uri": f"s3://artifacts/models/tiny-s3/{version}/hf/",
        "report_uri": f"s3://artifacts/evaluations/eval-{version}/report.json",
        "report_sha256": "0f" * 32,
        "metrics": {"heldout_loss": 3.25, "qa_token_f1": 0.21, "benchmark.cli.v2.acc_norm": 0.5},
        "dataset_version": "ds-20260101",
        "tokenizer_version": "tok-1",
        "training_job": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/train-m1",
        "evaluation_id": f"eval-{version}",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "repository": "https://git.example.com/team/docllm",
        "description": "tiny model, trained on the S3 guide (v2) — 5 minutes",
    }
    return PackageSpec.model_validate({**fields, **changes})


# -- the service model's constraints ---------------------------------------------------------------
def _java_pattern(pattern: str) -> Any:
    # AWS writes some patterns as Java regexes with a quantified end anchor ("...)*${1,128}"):
    # the quantifier repeats an empty match, so "$" alone means the same.
    return regex.compile(re.sub(r"\$\{\d+(,\d+)?\}$", "$", pattern))


def constraint_errors(value: Any, shape: Shape, path: str = "") -> list[str]:
    """What in ``value`` breaks ``shape``'s max, enum or pattern (botocore checks the rest)."""
    errors: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure":
        for name, member in shape.members.items():  # type: ignore[attr-defined]
            if name in value:
                errors += constraint_errors(value[name], member, f"{path}.{name}")
    elif shape.type_name == "list":
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} items > max {meta['max']}")
        for i, item in enumerate(value):
            errors += constraint_errors(item, shape.member, f"{path}[{i}]")  # type: ignore[attr-defined]
    elif shape.type_name == "map":
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} entries > max {meta['max']}")
        for k, v in value.items():
            errors += constraint_errors(k, shape.key, f"{path}<key {k}>")  # type: ignore[attr-defined]
            errors += constraint_errors(v, shape.value, f"{path}[{k}]")  # type: ignore[attr-defined]
    elif shape.type_name == "string":
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} characters > max {meta['max']}")
        if "enum" in meta and value not in meta["enum"]:
            errors.append(f"{path}: {value!r} not one of {meta['enum']}")
        if "pattern" in meta and not _java_pattern(meta["pattern"]).fullmatch(value):
            errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
    return errors


@pytest.fixture
def captured(aws: None) -> Iterator[tuple[SageMakerModelRegistry, list[tuple[str, dict[str, Any]]]]]:
    client = boto3.client("sagemaker", region_name=REGION)
    calls: list[tuple[str, dict[str, Any]]] = []

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    client.meta.events.register("provide-client-params.sagemaker.*", capture)
    yield SageMakerModelRegistry(stage="dev", client=client), calls


def test_every_request_matches_the_service_model(
    captured: tuple[SageMakerModelRegistry, list[tuple[str, dict[str, Any]]]],
) -> None:
    registry, calls = captured
    registry.register(spec("m1"))
    registry.register(spec("m1"))
    registry.register(spec("m2", dataset_version=None, commit=None, repository=None, description=""))
    registry.set_status("m1", "Approved", "gate: heldout_loss 3.25 ≤ unigram_val_loss 5.1 ✓\nqa ok")
    registry.set_status("m2", "Rejected", "alice@example.com: leaks")
    registry.promote("tiny-s3", "m1")
    registry.set_alias("tiny-s3", "previous_champion", None)
    registry.list()
    registry.list("tiny-s3")
    registry.aliases("smoke")
    with pytest.raises(NotFoundError):
        registry.get("nobody")

    service = registry.client.meta.service_model
    operations = {name for name, _ in calls}
    assert {
        "CreateModelPackageGroup",
        "CreateModelPackage",
        "UpdateModelPackage",
        "AddTags",
        "DeleteTags",
    } <= operations
    for name, params in calls:
        shape = service.operation_model(name).input_shape
        validate_parameters(params, shape)  # raises ParamValidationError on a bad request
        assert constraint_errors(params, shape, name) == []


def test_the_create_request_carries_metadata_metrics_and_digest() -> None:
    req = build_create_model_package_request(spec("m1"), stage="dev")
    assert req["ModelPackageGroupName"] == "docllm-dev-tiny-s3"
    assert req["ModelApprovalStatus"] == "PendingManualApproval"
    assert req["MetadataProperties"] == {
        "CommitId": "0123456789abcdef0123456789abcdef01234567",
        "Repository": "https://git.example.com/team/docllm",
        "GeneratedBy": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/train-m1",
    }
    stats = req["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert stats == {
        "ContentType": "application/json",
        "S3Uri": "s3://artifacts/evaluations/eval-m1/report.json",
        "ContentDigest": "sha256:" + "0f" * 32,
    }
    meta = req["CustomerMetadataProperties"]
    assert meta["docllm:model_version"] == "m1" and meta["docllm:stage"] == "dev"
    assert meta["docllm:metric:benchmark.cli.v2.acc_norm"] == "0.5"
    assert "InferenceSpecification" not in req
    assert req["ClientToken"] == client_token("dev", "m1") != client_token("prod", "m1")
    shape = boto3.client("sagemaker", region_name=REGION).meta.service_model.operation_model("CreateModelPackage")
    assert constraint_errors(req, shape.input_shape) == []


def test_a_group_created_by_another_process_first_is_used() -> None:
    client = boto3.client("sagemaker", region_name=REGION)
    registry = SageMakerModelRegistry(stage="dev", client=client)
    with Stubber(client) as stub:  # the Stubber checks each request against the service model too
        stub.add_client_error(
            "describe_model_package_group", service_error_code="ValidationException", http_status_code=400
        )
        stub.add_client_error(
            "create_model_package_group",
            service_error_code="ValidationException",
            service_message="Model Package Group already exists",
            http_status_code=400,
        )
        stub.add_response(
            "describe_model_package_group",
            {
                "ModelPackageGroupName": "docllm-dev-tiny-s3",
                "ModelPackageGroupArn": GROUP_ARN,
                "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
                "CreatedBy": {},
                "ModelPackageGroupStatus": "Completed",
            },
            {"ModelPackageGroupName": "docllm-dev-tiny-s3"},
        )
        assert registry._ensure_group("tiny-s3") == GROUP_ARN
        stub.assert_no_pending_responses()


def test_throttling_is_transient() -> None:
    client = boto3.client("sagemaker", region_name=REGION)
    registry = SageMakerModelRegistry(stage="dev", client=client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "list_model_package_groups",
            service_error_code="ThrottlingException",
            http_status_code=400,
            expected_params={"NameContains": ANY},
        )
        with pytest.raises(TransientError):
            registry.get("m1")


def test_the_constraint_check_catches_what_sagemaker_would_refuse() -> None:
    shape = boto3.client("sagemaker", region_name=REGION).meta.service_model.operation_model("CreateModelPackage")
    req = build_create_model_package_request(spec("m1"), stage="dev")
    req["ModelPackageDescription"] = "two\nlines"
    req["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentDigest"] = "0f" * 32
    req["CustomerMetadataProperties"]["docllm:note"] = "a;b"
    errors = constraint_errors(req, shape.input_shape)
    assert len(errors) == 3, errors
