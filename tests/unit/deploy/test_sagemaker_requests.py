"""SageMaker deployment requests: valid for botocore's service model, and what each field carries."""

from __future__ import annotations

import re
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters

from docllm.deploy import (
    DeploymentSpec,
    build_autoscaling_requests,
    build_sagemaker_requests,
    endpoint_name,
    versioned_name,
)
from docllm.deploy.sagemaker import has_local_storage
from docllm.exceptions import ConfigurationError

ROLE = "arn:aws:iam::123456789012:role/docllm-dev-endpoint"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docllm-serve:1"
KMS = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def spec(**overrides: Any) -> DeploymentSpec:
    base: dict[str, Any] = {
        "model_version": "v7",
        "family": "tiny",
        "export_uri": "s3://docllm-artifacts/models/tiny/v7/hf",
        "target": "sagemaker",
        "image_uri": IMAGE,
        "role_arn": ROLE,
        "kms_key_id": KMS,
        "subnets": ["subnet-1", "subnet-2"],
        "security_group_ids": ["sg-1"],
        "data_capture_uri": "s3://docllm-artifacts/capture/tiny/",
        "alarm_names": ["docllm-dev-tiny-5xx", "docllm-dev-tiny-latency"],
        "max_model_len": 1024,
    }
    return DeploymentSpec(**{**base, **overrides})


def validate(service: str, operation: str, params: dict[str, Any]) -> None:
    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).input_shape
    assert shape is not None
    validate_parameters(params, shape)  # raises ParamValidationError naming every bad field


@pytest.mark.parametrize(
    "deployment",
    [
        spec(),
        spec(instance_type="ml.m5.xlarge", traffic_shift="linear", shift_percent=25),
        spec(subnets=[], security_group_ids=[], data_capture_uri=None, alarm_names=[], kms_key_id=None),
        spec(traffic_shift="all_at_once", environment={"SM_VLLM_ENFORCE_EAGER": "true"}),
    ],
    ids=["full", "no-local-storage-linear", "minimal", "all-at-once"],
)
@pytest.mark.parametrize("update", [False, True], ids=["create", "update"])
def test_requests_are_valid_for_the_service_models(deployment: DeploymentSpec, update: bool) -> None:
    reqs = build_sagemaker_requests(deployment, stage="dev", update=update)
    validate("sagemaker", "CreateModel", reqs.model)
    validate("sagemaker", "CreateEndpointConfig", reqs.endpoint_config)
    validate("sagemaker", "UpdateEndpoint" if update else "CreateEndpoint", reqs.endpoint)
    autoscaling = build_autoscaling_requests(deployment, stage="dev")
    assert autoscaling is not None
    validate("application-autoscaling", "RegisterScalableTarget", autoscaling.scalable_target)
    validate("application-autoscaling", "PutScalingPolicy", autoscaling.scaling_policy)


def test_model_reads_the_uncompressed_export_network_isolated_in_the_vpc() -> None:
    model = build_sagemaker_requests(spec(), stage="dev").model
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataSource"] == {
        "S3DataSource": {
            "S3Uri": "s3://docllm-artifacts/models/tiny/v7/hf/",
            "S3DataType": "S3Prefix",
            "CompressionType": "None",
        }
    }
    assert "ModelDataUrl" not in model["PrimaryContainer"]
    assert model["EnableNetworkIsolation"] is True
    assert model["VpcConfig"] == {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}
    assert model["ExecutionRoleArn"] == ROLE
    env = model["PrimaryContainer"]["Environment"]
    assert env == {"DOCLLM_MODEL_VERSION": "v7", "SM_VLLM_DTYPE": "bfloat16", "SM_VLLM_MAX_MODEL_LEN": "1024"}
    tags = {t["Key"]: t["Value"] for t in model["Tags"]}
    assert tags["docllm:model-version"] == "v7" and tags["docllm:family"] == "tiny"


def test_endpoint_config_captures_data_encrypted_and_routes_to_least_busy() -> None:
    config = build_sagemaker_requests(spec(instance_type="ml.m5.xlarge"), stage="dev").endpoint_config
    capture = config["DataCaptureConfig"]
    assert capture["KmsKeyId"] == KMS
    assert capture["DestinationS3Uri"] == "s3://docllm-artifacts/capture/tiny/"
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    assert config["KmsKeyId"] == KMS
    (variant,) = config["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["RoutingConfig"] == {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}


def test_instance_with_local_storage_gets_no_volume_key_but_capture_stays_encrypted() -> None:
    config = build_sagemaker_requests(spec(instance_type="ml.g5.xlarge"), stage="dev").endpoint_config
    assert "KmsKeyId" not in config  # SageMaker refuses a volume key on NVMe instance storage
    assert config["DataCaptureConfig"]["KmsKeyId"] == KMS
    assert has_local_storage("ml.g4dn.xlarge") and not has_local_storage("ml.c5.xlarge")


def test_data_capture_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="kms_key_id"):
        build_sagemaker_requests(spec(kms_key_id=None), stage="dev")


@pytest.mark.parametrize("field", ["image_uri", "role_arn"])
def test_missing_image_or_role_is_named(field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        build_sagemaker_requests(spec(**{field: None}), stage="dev")


def test_half_a_vpc_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="subnets and security_group_ids"):
        build_sagemaker_requests(spec(security_group_ids=[]), stage="dev")


def test_export_must_be_s3() -> None:
    with pytest.raises(ConfigurationError, match="s3://"):
        build_sagemaker_requests(spec(export_uri="/data/models/tiny/v7/hf"), stage="dev")


def test_update_is_blue_green_canary_with_rollback_alarms() -> None:
    update = build_sagemaker_requests(spec(), stage="dev", update=True).endpoint
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 600,
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
    }
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": "docllm-dev-tiny-5xx"}, {"AlarmName": "docllm-dev-tiny-latency"}]
    }
    assert update["EndpointName"] == "docllm-dev-tiny"


def test_linear_update_steps_by_capacity_percent() -> None:
    routing = build_sagemaker_requests(spec(traffic_shift="linear", shift_percent=20), stage="dev", update=True)
    cfg = routing.endpoint["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert cfg["Type"] == "LINEAR" and cfg["LinearStepSize"] == {"Type": "CAPACITY_PERCENT", "Value": 20}
    assert "CanarySize" not in cfg


def test_create_carries_no_deployment_config() -> None:
    create = build_sagemaker_requests(spec(), stage="dev").endpoint
    assert "DeploymentConfig" not in create
    assert "docllm:model-version" not in {t["Key"] for t in create["Tags"]}


def test_names_are_deterministic_per_family_and_version_and_fit_sagemaker() -> None:
    first = build_sagemaker_requests(spec(), stage="dev")
    again = build_sagemaker_requests(spec(), stage="dev")
    other = build_sagemaker_requests(spec(model_version="v8"), stage="dev")
    assert first.model["ModelName"] == again.model["ModelName"] == first.endpoint_config["EndpointConfigName"]
    assert first.model["ModelName"] != other.model["ModelName"]
    assert first.endpoint["EndpointName"] == other.endpoint["EndpointName"]
    long = versioned_name("production-eu", "A Very_Long family name " * 4, "2024.06.01+build.7/rc1")
    for name in (first.model["ModelName"], long, endpoint_name("dev", "x" * 200)):
        assert SAGEMAKER_NAME.match(name) and len(name) <= 63, name
    assert long.startswith("docllm-production-eu-a-very-long-family")


def test_autoscaling_tracks_invocations_per_instance_on_the_variant() -> None:
    reqs = build_autoscaling_requests(spec(autoscaling_min=1, autoscaling_max=4), stage="dev")
    assert reqs is not None
    assert reqs.scalable_target["ResourceId"] == "endpoint/docllm-dev-tiny/variant/AllTraffic"
    assert reqs.scalable_target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (reqs.scalable_target["MinCapacity"], reqs.scalable_target["MaxCapacity"]) == (1, 4)
    tracking = reqs.scaling_policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert build_autoscaling_requests(spec(target_invocations_per_instance=None), stage="dev") is None


def test_spec_refuses_inverted_scaling_bounds_and_foreign_environment() -> None:
    with pytest.raises(ValueError, match="autoscaling_min"):
        spec(autoscaling_min=3, autoscaling_max=2)
    with pytest.raises(ValueError, match="SM_VLLM_"):
        spec(environment={"PATH": "/tmp"})
