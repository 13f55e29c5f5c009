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


# -- aliases, lookups, who changed a package ---------------------------------------------------------
PACKAGE_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/docllm-dev-tiny-s3/1"


def _group_described(stub: Stubber) -> None:
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


def test_setting_an_alias_overwrites_its_tag_without_deleting_it_first() -> None:
    client = boto3.client("sagemaker", region_name=REGION)
    registry = SageMakerModelRegistry(stage="dev", client=client)
    with Stubber(client) as stub:  # any call not queued here (DeleteTags) fails the test
        _group_described(stub)
        stub.add_response(
            "add_tags",
            {"Tags": [{"Key": "docllm:alias:champion", "Value": "m2"}]},
            {"ResourceArn": GROUP_ARN, "Tags": [{"Key": "docllm:alias:champion", "Value": "m2"}]},
        )
        registry._write_alias("tiny-s3", "champion", "m2")
        stub.assert_no_pending_responses()
    with Stubber(client) as stub:  # removing the alias is the one case that deletes
        _group_described(stub)
        stub.add_response("delete_tags", {}, {"ResourceArn": GROUP_ARN, "TagKeys": ["docllm:alias:champion"]})
        registry._write_alias("tiny-s3", "champion", None)
        stub.assert_no_pending_responses()


def test_promoting_sends_no_delete_tags(
    captured: tuple[SageMakerModelRegistry, list[tuple[str, dict[str, Any]]]],
) -> None:
    registry, calls = captured
    for v in ("m1", "m2"):
        registry.register(spec(v))
        registry.set_status(v, "Approved", "gate: ok")
    calls.clear()
    registry.promote("tiny-s3", "m1")
    assert registry.promote("tiny-s3", "m2") == {"champion": "m2", "previous_champion": "m1"}
    assert "DeleteTags" not in {name for name, _ in calls}


def test_a_known_version_is_one_describe_and_a_family_hint_skips_the_other_groups(
    captured: tuple[SageMakerModelRegistry, list[tuple[str, dict[str, Any]]]],
) -> None:
    registry, calls = captured
    registry.register(spec("m1"))
    registry.register(spec("m2"))
    registry.register(spec("s1", family="smoke", training_job=None))
    fresh = SageMakerModelRegistry(stage="dev", client=registry.client)  # another process: nothing cached
    calls.clear()
    assert fresh.get("m1", family="tiny-s3").model_version == "m1"
    assert "ListModelPackageGroups" not in {name for name, _ in calls}
    assert {p["ModelPackageGroupName"] for name, p in calls if name == "ListModelPackages"} == {"docllm-dev-tiny-s3"}
    calls.clear()
    assert fresh.get("m1").model_version == "m1"
    assert fresh.get("m2").model_version == "m2"  # described on the way to m1 (newest first)
    assert [name for name, _ in calls] == ["DescribeModelPackage", "DescribeModelPackage"]


def test_a_cached_version_whose_package_is_gone_is_searched_again() -> None:
    client = boto3.client("sagemaker", region_name=REGION)
    registry = SageMakerModelRegistry(stage="dev", client=client)
    registry._arns["m1"] = PACKAGE_ARN
    with Stubber(client) as stub:
        stub.add_client_error("describe_model_package", service_error_code="ValidationException", http_status_code=400)
        stub.add_client_error("list_model_packages", service_error_code="ValidationException", http_status_code=400)
        stub.add_response("list_model_package_groups", {"ModelPackageGroupSummaryList": []})
        with pytest.raises(NotFoundError):
            registry.get("m1", family="tiny-s3")
        stub.assert_no_pending_responses()
    assert "m1" not in registry._arns


def _described(last_modified_by: dict[str, Any] | None) -> dict[str, Any]:
    from docllm.registry.metadata import customer_metadata, metadata_properties, model_metrics

    s = spec("m1")
    desc: dict[str, Any] = {
        "ModelPackageName": "docllm-dev-tiny-s3",
        "ModelPackageGroupName": "docllm-dev-tiny-s3",
        "ModelPackageVersion": 1,
        "ModelPackageArn": PACKAGE_ARN,
        "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
        "LastModifiedTime": datetime(2026, 1, 2, tzinfo=UTC),
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "ModelApprovalStatus": "Approved",
        "ApprovalDescription": "console",
        "CustomerMetadataProperties": customer_metadata(s, stage="dev"),
        "MetadataProperties": metadata_properties(s),
        "ModelMetrics": model_metrics(s),
    }
    if last_modified_by is not None:
        desc["LastModifiedBy"] = last_modified_by
    return desc


@pytest.mark.parametrize(
    ("user", "name"),
    [
        ({"UserProfileName": "alice", "IamIdentity": {"Arn": "arn:aws:sts::1:assumed-role/R/a"}}, "alice"),
        (
            {"IamIdentity": {"Arn": "arn:aws:sts::123456789012:assumed-role/Admin/bob"}, "DomainId": "d-1"},
            "arn:aws:sts::123456789012:assumed-role/Admin/bob",
        ),
        ({"DomainId": "d-abc"}, "d-abc"),
        (None, None),
    ],
)
def test_get_by_arn_describes_the_package_and_names_who_last_changed_it(
    user: dict[str, Any] | None, name: str | None
) -> None:
    client = boto3.client("sagemaker", region_name=REGION)
    registry = SageMakerModelRegistry(stage="dev", client=client)
    with Stubber(client) as stub:
        stub.add_response("describe_model_package", _described(user), {"ModelPackageName": PACKAGE_ARN})
        package = registry.get_by_arn(PACKAGE_ARN)
        stub.assert_no_pending_responses()
    assert (package.model_version, package.status, package.last_modified_by) == ("m1", "Approved", name)
    assert registry._arns == {"m1": PACKAGE_ARN}


def test_get_by_arn_of_a_package_docllm_did_not_register_is_not_found() -> None:
    client = boto3.client("sagemaker", region_name=REGION)
    registry = SageMakerModelRegistry(stage="dev", client=client)
    foreign = {**_described(None), "CustomerMetadataProperties": {"team": "other"}}
    with Stubber(client) as stub:
        stub.add_response("describe_model_package", foreign, {"ModelPackageName": PACKAGE_ARN})
        stub.add_client_error("describe_model_package", service_error_code="ValidationException", http_status_code=400)
        for _ in range(2):
            with pytest.raises(NotFoundError):
                registry.get_by_arn(PACKAGE_ARN)
