"""SageMakerDeployer: create on moto, blue/green update on botocore's Stubber (moto has no UpdateEndpoint).

Every request the deployer sends is captured and validated against botocore's
service model, besides botocore's own client-side validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from docllm.adapters.aws.errors import AwsPermanentError
from docllm.adapters.aws.sagemaker_deploy import EndpointBrokenError, EndpointBusyError, SageMakerDeployer
from docllm.deploy import DeploymentSpec, build_autoscaling_requests, build_sagemaker_requests, sagemaker_names
from docllm.exceptions import NotFoundError, PermanentError, TransientError
from tests.integration.aws.conftest import REGION

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/docllm-dev-endpoint"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/docllm-serve:1"
KMS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def spec(**overrides: Any) -> DeploymentSpec:
    base: dict[str, Any] = {
        "model_version": "v7",
        "family": "tiny",
        "export_uri": "s3://docllm-artifacts/models/tiny/v7/hf/",
        "target": "sagemaker",
        "instance_type": "ml.m5.xlarge",
        "image_uri": IMAGE,
        "role_arn": ROLE,
        "kms_key_id": KMS,
        "subnets": ["subnet-1"],
        "security_group_ids": ["sg-1"],
        "data_capture_uri": "s3://docllm-artifacts/capture/tiny/",
        "alarm_names": ["docllm-dev-tiny-5xx"],
    }
    return DeploymentSpec(**{**base, **overrides})


class Captured:
    """Every (service, operation, params) a client sent, each validated against the service model."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self._session = botocore.session.get_session()

    def attach(self, client: Any) -> Any:
        service = client.meta.service_model.service_name
        client.meta.events.register(f"provide-client-params.{service}.*", self._capture)
        return client

    def _capture(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        shape = self._session.get_service_model(model.service_model.service_name).operation_model(model.name)
        if shape.input_shape is not None:
            validate_parameters(params, shape.input_shape)
        self.calls.append((model.service_model.service_name, model.name, dict(params)))

    def operations(self) -> list[str]:
        return [op for _, op, _ in self.calls]

    def params(self, operation: str) -> dict[str, Any]:
        return next(p for _, op, p in self.calls if op == operation)


@pytest.fixture
def captured() -> Captured:
    return Captured()


@pytest.fixture
def moto_deployer(aws: None, captured: Captured) -> SageMakerDeployer:
    return SageMakerDeployer(
        client=captured.attach(boto3.client("sagemaker", region_name=REGION)),
        autoscaling_client=captured.attach(boto3.client("application-autoscaling", region_name=REGION)),
    )


@pytest.fixture
def stubbed(captured: Captured) -> Iterator[tuple[SageMakerDeployer, Stubber]]:
    client = captured.attach(boto3.client("sagemaker", region_name=REGION))
    with Stubber(client) as stub:
        yield SageMakerDeployer(client=client, autoscaling_client=None), stub
        stub.assert_no_pending_responses()


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"


def not_found(stub: Stubber, operation: str) -> None:
    # SageMaker's answer to Describe* on an unknown name.
    stub.add_client_error(operation, service_error_code="ValidationException", http_status_code=400)


def endpoint_description(config: str, status: str = "InService", **extra: Any) -> dict[str, Any]:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return {
        "EndpointName": "docllm-dev-tiny",
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/docllm-dev-tiny",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": now,
        "LastModifiedTime": now,
        **extra,
    }


# --- create (moto)


def test_first_deployment_creates_model_config_and_endpoint(
    moto_deployer: SageMakerDeployer, captured: Captured
) -> None:
    record = moto_deployer.deploy(spec(), stage="dev")

    names = sagemaker_names(spec(), stage="dev")
    assert record.target == "sagemaker" and record.model_version == "v7"
    assert record.endpoint == names.endpoint == "docllm-dev-tiny"
    assert record.previous_version is None
    assert record.details["action"] == "create"
    assert captured.operations() == [
        "DescribeEndpoint",
        "DescribeModel",
        "CreateModel",
        "DescribeEndpointConfig",
        "CreateEndpointConfig",
        "CreateEndpoint",
    ]
    expected = build_sagemaker_requests(spec(), stage="dev")
    assert captured.params("CreateModel") == expected.model
    assert captured.params("CreateEndpointConfig") == expected.endpoint_config
    assert captured.params("CreateEndpoint") == expected.endpoint
    sm = moto_deployer.client
    assert sm.describe_endpoint(EndpointName=names.endpoint)["EndpointConfigName"] == names.endpoint_config
    # moto keeps the model but not every field (EnableNetworkIsolation): the captured request shows those.
    assert sm.describe_model(ModelName=names.model)["ExecutionRoleArn"] == ROLE


def test_redelivered_deployment_sends_no_new_requests(moto_deployer: SageMakerDeployer, captured: Captured) -> None:
    moto_deployer.deploy(spec(), stage="dev")
    sent = len(captured.calls)

    again = moto_deployer.deploy(spec(), stage="dev")

    assert captured.operations()[sent:] == ["DescribeEndpoint"]
    assert again.details["action"] == "none"
    assert again.endpoint == "docllm-dev-tiny"


def test_existing_model_and_config_of_the_version_are_reused(
    moto_deployer: SageMakerDeployer, captured: Captured
) -> None:
    reqs = build_sagemaker_requests(spec(), stage="dev")
    moto_deployer.client.create_model(**reqs.model)
    moto_deployer.client.create_endpoint_config(**reqs.endpoint_config)
    captured.calls.clear()

    moto_deployer.deploy(spec(), stage="dev")

    assert "CreateModel" not in captured.operations()
    assert "CreateEndpointConfig" not in captured.operations()
    assert captured.operations()[-1] == "CreateEndpoint"


def test_status_reads_the_endpoint_and_an_unknown_one_is_not_found(moto_deployer: SageMakerDeployer) -> None:
    moto_deployer.deploy(spec(), stage="dev")
    assert moto_deployer.status("docllm-dev-tiny") in {"Creating", "InService"}
    with pytest.raises(NotFoundError):
        moto_deployer.status("docllm-dev-missing")


def test_autoscaling_registers_the_variant_and_tracks_invocations(
    moto_deployer: SageMakerDeployer, captured: Captured
) -> None:
    moto_deployer.deploy(spec(), stage="dev")

    assert moto_deployer.configure_autoscaling(spec(autoscaling_max=3), stage="dev") is True

    expected = build_autoscaling_requests(spec(autoscaling_max=3), stage="dev")
    assert expected is not None
    assert captured.params("RegisterScalableTarget") == expected.scalable_target
    assert captured.params("PutScalingPolicy") == expected.scaling_policy
    targets = moto_deployer.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["ResourceId"], t["MaxCapacity"]) for t in targets] == [
        ("endpoint/docllm-dev-tiny/variant/AllTraffic", 3)
    ]
    assert moto_deployer.configure_autoscaling(spec(target_invocations_per_instance=None), stage="dev") is False


# --- update (Stubber)


def test_new_version_updates_the_endpoint_blue_green_and_records_the_previous(
    stubbed: tuple[SageMakerDeployer, Stubber], captured: Captured
) -> None:
    deployer, stub = stubbed
    old = sagemaker_names(spec(model_version="v6"), stage="dev")
    new = sagemaker_names(spec(), stage="dev")
    expected = build_sagemaker_requests(spec(), stage="dev", update=True)
    stub.add_response("describe_endpoint", endpoint_description(old.endpoint_config), {"EndpointName": new.endpoint})
    not_found(stub, "describe_model")
    stub.add_response("create_model", {"ModelArn": arn("model", new.model)}, expected.model)
    not_found(stub, "describe_endpoint_config")
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": arn("endpoint-config", new.endpoint_config)},
        expected.endpoint_config,
    )
    old_arn = arn("endpoint-config", old.endpoint_config)
    stub.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": old.endpoint_config,
            "EndpointConfigArn": old_arn,
            "ProductionVariants": [{"VariantName": "AllTraffic"}],
            "CreationTime": datetime(2025, 1, 1, tzinfo=UTC),
        },
        {"EndpointConfigName": old.endpoint_config},
    )
    stub.add_response("list_tags", {"Tags": [{"Key": "docllm:model-version", "Value": "v6"}]}, {"ResourceArn": old_arn})
    stub.add_response("update_endpoint", {"EndpointArn": arn("endpoint", new.endpoint)}, expected.endpoint)

    record = deployer.deploy(spec(), stage="dev")

    assert record.previous_version == "v6"
    assert record.status == "InProgress"
    assert record.details["action"] == "update"
    assert record.details["previous_endpoint_config_name"] == old.endpoint_config
    update = captured.params("UpdateEndpoint")
    assert update["EndpointConfigName"] == new.endpoint_config
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "docllm-dev-tiny-5xx"}]}


@pytest.mark.parametrize("status", ["Updating", "Creating", "RollingBack"])
def test_busy_endpoint_is_a_transient_refusal_before_anything_is_created(
    stubbed: tuple[SageMakerDeployer, Stubber], captured: Captured, status: str
) -> None:
    deployer, stub = stubbed
    stub.add_response("describe_endpoint", endpoint_description("docllm-dev-tiny-0000000000", status))

    with pytest.raises(EndpointBusyError) as caught:
        deployer.deploy(spec(), stage="dev")

    assert isinstance(caught.value, TransientError)
    assert captured.operations() == ["DescribeEndpoint"]


def test_failed_endpoint_is_a_permanent_refusal_naming_the_reason(stubbed: tuple[SageMakerDeployer, Stubber]) -> None:
    deployer, stub = stubbed
    stub.add_response(
        "describe_endpoint",
        endpoint_description("docllm-dev-tiny-0000000000", "Failed", FailureReason="image pull failed"),
    )
    with pytest.raises(EndpointBrokenError, match="image pull failed") as caught:
        deployer.deploy(spec(), stage="dev")
    assert isinstance(caught.value, PermanentError)


def test_model_created_by_a_concurrent_delivery_is_reused(
    stubbed: tuple[SageMakerDeployer, Stubber], captured: Captured
) -> None:
    deployer, stub = stubbed
    not_found(stub, "describe_endpoint")
    not_found(stub, "describe_model")
    stub.add_client_error("create_model", service_error_code="ValidationException", http_status_code=400)
    names = sagemaker_names(spec(), stage="dev")
    stub.add_response(
        "describe_model",
        {"ModelName": names.model, "ModelArn": arn("model", names.model), "CreationTime": datetime.now(UTC)},
    )
    stub.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": names.endpoint_config,
            "EndpointConfigArn": arn("endpoint-config", names.endpoint_config),
            "ProductionVariants": [{"VariantName": "AllTraffic"}],
            "CreationTime": datetime.now(UTC),
        },
    )
    stub.add_response("create_endpoint", {"EndpointArn": arn("endpoint", names.endpoint)})

    record = deployer.deploy(spec(), stage="dev")

    assert record.details["action"] == "create"
    assert captured.operations().count("CreateModel") == 1


def test_access_denied_is_permanent_and_names_the_operation(stubbed: tuple[SageMakerDeployer, Stubber]) -> None:
    deployer, stub = stubbed
    not_found(stub, "describe_endpoint")
    not_found(stub, "describe_model")
    stub.add_client_error("create_model", service_error_code="AccessDeniedException", http_status_code=400)

    with pytest.raises(AwsPermanentError, match="CreateModel") as caught:
        deployer.deploy(spec(), stage="dev")
    assert caught.value.code == "AccessDeniedException"


def test_throttling_is_transient(stubbed: tuple[SageMakerDeployer, Stubber]) -> None:
    deployer, stub = stubbed
    stub.add_client_error("describe_endpoint", service_error_code="ThrottlingException", http_status_code=400)
    with pytest.raises(TransientError):
        deployer.deploy(spec(), stage="dev")
