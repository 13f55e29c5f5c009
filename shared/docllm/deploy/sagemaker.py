"""SageMaker endpoint requests for a :class:`~docllm.deploy.spec.DeploymentSpec`, built without a client.

One version is one Model and one EndpointConfig (named per version, so a
redelivered deployment finds them); the family's Endpoint is created once and
then moved to each new config by ``UpdateEndpoint`` with a blue/green policy
that rolls back on the given CloudWatch alarms.

The model is the ``containers/serve`` image (vLLM behind the SageMaker
``/ping`` + ``/invocations`` contract) reading the Hugging Face export
*uncompressed* from its S3 prefix (``ModelDataSource``, ``CompressionType:
None``): SageMaker copies the prefix to ``/opt/ml/model``, where the entry
script points vLLM. No ``model.tar.gz`` to build, and the same prefix the
registry records is what serves.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from docllm.deploy.names import endpoint_name, versioned_name
from docllm.deploy.spec import ADAPTER_CHANNEL, ADDITIONAL_MODEL_DATA, DeploymentSpec
from docllm.exceptions import ConfigurationError

#: The one production variant; autoscaling is registered on it, so it never changes name.
VARIANT_NAME = "AllTraffic"
#: Variable the entry script passes to vLLM as ``--served-model-name`` (the ``model`` of responses).
MODEL_VERSION_ENV = "DOCLLM_MODEL_VERSION"
#: The base's served name when a LoRA adapter is served under the model version (containers/serve/serve.py).
BASE_NAME_ENV = "DOCLLM_BASE_MODEL_NAME"
#: vLLM loads the weights and compiles graphs before ``/ping`` answers: give it longer than the default.
STARTUP_HEALTH_TIMEOUT_S = 1200
MODEL_DOWNLOAD_TIMEOUT_S = 1200

_S3_URI = re.compile(r"^s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](/.*)?$")

# Instance families with local NVMe storage: SageMaker encrypts it in hardware and refuses an
# endpoint config KmsKeyId when a variant uses one. Families with a "d" after the generation
# (m5d, g4dn, p4d) follow a rule; the rest are listed. (Same rule as the training job runner.)
_LOCAL_STORAGE_FAMILIES = frozenset({"g5", "g6", "g6e", "p5", "p5e", "p5en", "trn1", "trn1n", "trn2", "inf2"})
_D_FAMILY = re.compile(r"^[a-z]+\d+[a-z]*d[a-z]*$")


def has_local_storage(instance_type: str) -> bool:
    """Whether an ``ml.*`` instance type has local NVMe storage (no KMS key on its volume then).

    Examples
    --------
    >>> has_local_storage("ml.g5.xlarge"), has_local_storage("ml.g4dn.xlarge"), has_local_storage("ml.m5.xlarge")
    (True, True, False)
    """
    parts = instance_type.split(".")
    family = parts[1] if len(parts) >= 3 else instance_type
    return family in _LOCAL_STORAGE_FAMILIES or bool(_D_FAMILY.match(family))


class SageMakerNames(NamedTuple):
    """Names of the resources one deployment touches."""

    model: str
    endpoint_config: str
    endpoint: str
    variant: str = VARIANT_NAME


def sagemaker_names(spec: DeploymentSpec, *, stage: str) -> SageMakerNames:
    """Model and config named per (family, version); the endpoint per family.

    Examples
    --------
    >>> spec = DeploymentSpec(model_version="v7", family="tiny", export_uri="s3://a/m/", target="sagemaker")
    >>> sagemaker_names(spec, stage="dev").endpoint
    'docllm-dev-tiny'
    """
    versioned = versioned_name(stage, spec.family, spec.model_version)
    return SageMakerNames(model=versioned, endpoint_config=versioned, endpoint=endpoint_name(stage, spec.family))


class SageMakerRequests(NamedTuple):
    """Keyword arguments of the three calls, in order. ``endpoint`` is for
    ``create_endpoint`` or ``update_endpoint`` (``update``)."""

    model: dict[str, Any]
    endpoint_config: dict[str, Any]
    endpoint: dict[str, Any]
    update: bool


def _tags(spec: DeploymentSpec, stage: str) -> list[dict[str, str]]:
    tags = {
        **spec.tags,
        "docllm:stage": stage,
        "docllm:family": spec.family,
        "docllm:model-version": spec.model_version,
    }
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _prefix_uri(uri: str, what: str) -> str:
    if not _S3_URI.match(uri):
        raise ConfigurationError(f"{what} must be an s3:// URI, got {uri!r}")
    # An S3Prefix data source names a "directory": SageMaker requires the trailing slash.
    return uri if uri.endswith("/") else uri + "/"


def container_environment(spec: DeploymentSpec) -> dict[str, str]:
    """The serving container's environment: what the entry script turns into vLLM flags.

    Examples
    --------
    >>> spec = DeploymentSpec(model_version="v7", family="tiny", export_uri="s3://a/m/", target="sagemaker",
    ...                       max_model_len=1024)
    >>> env = container_environment(spec)
    >>> env["SM_VLLM_MAX_MODEL_LEN"], env["SM_VLLM_DTYPE"], env["DOCLLM_MODEL_VERSION"]
    ('1024', 'bfloat16', 'v7')
    """
    env = {"SM_VLLM_DTYPE": spec.dtype, **spec.environment, MODEL_VERSION_ENV: spec.model_version}
    if spec.max_model_len is not None:
        env["SM_VLLM_MAX_MODEL_LEN"] = str(spec.max_model_len)
    if spec.lora_adapter is not None:
        env.update(lora_environment(spec))
    return dict(sorted(env.items()))


def lora_environment(spec: DeploymentSpec) -> dict[str, str]:
    """The serving image's variables for a LoRA model: vLLM's ``--enable-lora --max-lora-rank
    --max-loras --lora-modules`` (the adapter, named after the model version, from its
    ``AdditionalModelDataSources`` channel) and the base's served name (``DOCLLM_BASE_MODEL_NAME``),
    so that a request naming no model gets the adapter.

    >>> spec = DeploymentSpec(model_version="v2", family="f", export_uri="s3://a/f/v2/hf/", target="sagemaker",
    ...     lora_adapter={"adapter_uri": "s3://a/f/v2/adapter/", "base_uri": "s3://a/b/v1/hf/",
    ...                   "base_name": "v1", "max_rank": 8})
    >>> lora_environment(spec)["SM_VLLM_LORA_MODULES"]
    'v2=/opt/ml/additional-model-data-sources/adapter'
    """
    lora = spec.lora_adapter
    if lora is None:
        return {}
    flags = lora.vllm_args(spec.model_version, f"{ADDITIONAL_MODEL_DATA}/{ADAPTER_CHANNEL}")
    return {
        "SM_VLLM_ENABLE_LORA": "true",
        "SM_VLLM_MAX_LORA_RANK": flags[flags.index("--max-lora-rank") + 1],
        "SM_VLLM_MAX_LORAS": "1",
        "SM_VLLM_LORA_MODULES": flags[-1],
        BASE_NAME_ENV: lora.base_name,
    }


def build_create_model_request(spec: DeploymentSpec, *, stage: str) -> dict[str, Any]:
    """``CreateModel``: the serve image over the uncompressed export, network-isolated."""
    spec.require("image_uri", "role_arn")
    names = sagemaker_names(spec, stage=stage)
    request: dict[str, Any] = {
        "ModelName": names.model,
        "ExecutionRoleArn": spec.role_arn,
        "PrimaryContainer": {
            "Image": spec.image_uri,
            "ModelDataSource": {
                "S3DataSource": {
                    # A LoRA model: the base's weights, its adapter in the channel below.
                    "S3Uri": _prefix_uri(
                        spec.lora_adapter.base_uri if spec.lora_adapter else spec.export_uri, "export_uri"
                    ),
                    "S3DataType": "S3Prefix",
                    "CompressionType": "None",
                }
            },
            "Environment": container_environment(spec),
        },
        # The container needs no network: weights come from /opt/ml/model, the image sets HF_HUB_OFFLINE.
        "EnableNetworkIsolation": True,
        "Tags": _tags(spec, stage),
    }
    if spec.lora_adapter is not None:
        request["PrimaryContainer"]["AdditionalModelDataSources"] = [
            {
                "ChannelName": ADAPTER_CHANNEL,
                "S3DataSource": {
                    "S3Uri": _prefix_uri(spec.lora_adapter.adapter_uri, "adapter_uri"),
                    "S3DataType": "S3Prefix",
                    "CompressionType": "None",
                },
            }
        ]
    if spec.subnets or spec.security_group_ids:
        if not (spec.subnets and spec.security_group_ids):
            raise ConfigurationError("a VPC endpoint needs both subnets and security_group_ids")
        request["VpcConfig"] = {"Subnets": list(spec.subnets), "SecurityGroupIds": list(spec.security_group_ids)}
    return request


def build_create_endpoint_config_request(spec: DeploymentSpec, *, stage: str) -> dict[str, Any]:
    """``CreateEndpointConfig``: one variant, KMS on its volume, data capture to an encrypted prefix."""
    names = sagemaker_names(spec, stage=stage)
    variant: dict[str, Any] = {
        "VariantName": names.variant,
        "ModelName": names.model,
        "InitialInstanceCount": spec.instance_count,
        "InstanceType": spec.instance_type,
        "InitialVariantWeight": 1.0,
        "ModelDataDownloadTimeoutInSeconds": MODEL_DOWNLOAD_TIMEOUT_S,
        "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_HEALTH_TIMEOUT_S,
        # Generation requests vary by orders of magnitude in length: send each to the least busy instance.
        "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
    }
    request: dict[str, Any] = {
        "EndpointConfigName": names.endpoint_config,
        "ProductionVariants": [variant],
        "Tags": _tags(spec, stage),
    }
    if spec.kms_key_id and not has_local_storage(spec.instance_type):
        request["KmsKeyId"] = spec.kms_key_id
    if spec.data_capture_uri:
        if not spec.kms_key_id:
            # Captured prompts and answers are documentation content: never stored under a default key.
            raise ConfigurationError("data capture needs kms_key_id (captured payloads are encrypted with it)")
        request["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": spec.data_capture_percent,
            "DestinationS3Uri": _prefix_uri(spec.data_capture_uri, "data_capture_uri"),
            "KmsKeyId": spec.kms_key_id,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        }
    return request


def build_deployment_config(spec: DeploymentSpec) -> dict[str, Any]:
    """``DeploymentConfig`` of an update: blue/green traffic shifting, rollback on the alarms.

    Examples
    --------
    >>> spec = DeploymentSpec(model_version="v7", family="tiny", export_uri="s3://a/m/", target="sagemaker",
    ...                       alarm_names=["docllm-dev-tiny-5xx"])
    >>> cfg = build_deployment_config(spec)
    >>> cfg["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"]
    'CANARY'
    >>> cfg["AutoRollbackConfiguration"]
    {'Alarms': [{'AlarmName': 'docllm-dev-tiny-5xx'}]}
    """
    routing: dict[str, Any] = {
        "Type": {"canary": "CANARY", "linear": "LINEAR", "all_at_once": "ALL_AT_ONCE"}[spec.traffic_shift],
        "WaitIntervalInSeconds": spec.shift_wait_s,
    }
    step = {"Type": "CAPACITY_PERCENT", "Value": spec.shift_percent}
    if spec.traffic_shift == "canary":
        routing["CanarySize"] = step
    elif spec.traffic_shift == "linear":
        routing["LinearStepSize"] = step
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": spec.termination_wait_s,
            "MaximumExecutionTimeoutInSeconds": spec.max_update_s,
        }
    }
    if spec.alarm_names:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in spec.alarm_names]}
    return config


def build_sagemaker_requests(spec: DeploymentSpec, *, stage: str, update: bool = False) -> SageMakerRequests:
    """All three requests of one deployment.

    Parameters
    ----------
    spec:
        The deployment; needs ``image_uri`` and ``role_arn``.
    stage:
        Platform stage; part of every name.
    update:
        The family's endpoint exists: build ``UpdateEndpoint`` (blue/green,
        auto-rollback) instead of ``CreateEndpoint``.

    Raises
    ------
    ConfigurationError
        A field the target needs is missing, a URI is not ``s3://``, data
        capture without a KMS key, half a VPC.

    Examples
    --------
    >>> spec = DeploymentSpec(model_version="v7", family="tiny", export_uri="s3://art/models/tiny/v7/hf",
    ...                       target="sagemaker", image_uri="img", role_arn="arn:aws:iam::123456789012:role/r")
    >>> reqs = build_sagemaker_requests(spec, stage="dev", update=True)
    >>> reqs.model["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]["S3Uri"]
    's3://art/models/tiny/v7/hf/'
    >>> reqs.endpoint["EndpointName"], "DeploymentConfig" in reqs.endpoint
    ('docllm-dev-tiny', True)
    """
    names = sagemaker_names(spec, stage=stage)
    endpoint: dict[str, Any] = {"EndpointName": names.endpoint, "EndpointConfigName": names.endpoint_config}
    if update:
        endpoint["DeploymentConfig"] = build_deployment_config(spec)
    else:
        # The endpoint outlives the version it was created with: no version tag that would go stale.
        endpoint["Tags"] = [t for t in _tags(spec, stage) if t["Key"] != "docllm:model-version"]
    return SageMakerRequests(
        model=build_create_model_request(spec, stage=stage),
        endpoint_config=build_create_endpoint_config_request(spec, stage=stage),
        endpoint=endpoint,
        update=update,
    )


class AutoscalingRequests(NamedTuple):
    """``register_scalable_target`` and ``put_scaling_policy`` keyword arguments."""

    scalable_target: dict[str, Any]
    scaling_policy: dict[str, Any]


def build_autoscaling_requests(spec: DeploymentSpec, *, stage: str) -> AutoscalingRequests | None:
    """Target tracking on invocations per instance for the family's variant; ``None`` when disabled.

    Both calls are idempotent puts, so re-applying them after every update is safe.

    Examples
    --------
    >>> spec = DeploymentSpec(model_version="v7", family="tiny", export_uri="s3://a/m/", target="sagemaker")
    >>> reqs = build_autoscaling_requests(spec, stage="dev")
    >>> reqs.scalable_target["ResourceId"]
    'endpoint/docllm-dev-tiny/variant/AllTraffic'
    """
    if spec.target_invocations_per_instance is None:
        return None
    names = sagemaker_names(spec, stage=stage)
    resource = f"endpoint/{names.endpoint}/variant/{names.variant}"
    dimension = "sagemaker:variant:DesiredInstanceCount"
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource,
        "ScalableDimension": dimension,
        "MinCapacity": spec.autoscaling_min,
        "MaxCapacity": spec.autoscaling_max,
    }
    policy = {
        "PolicyName": f"{names.endpoint}-invocations",
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource,
        "ScalableDimension": dimension,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(spec.target_invocations_per_instance),
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": spec.scale_in_cooldown_s,
            "ScaleOutCooldown": spec.scale_out_cooldown_s,
        },
    }
    return AutoscalingRequests(scalable_target=target, scaling_policy=policy)
