"""The AWS deploy targets and the inference engine of whatever is deployed, behind one facade each.

:class:`CloudDeployer` turns a model record into a :class:`~docllm.deploy.spec.DeploymentSpec` from the
platform's settings and hands it to the SageMaker deployer or the Bedrock importer.
:class:`DeployedInference` reads the target's endpoint record on every call, so a new deployment is
used by the next request without restarting anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from docllm.exceptions import ConfigurationError
from docllm.ports.inference import Generation, GenerationParams, InferenceEngine, ModelInfo
from docllm.ports.state import StateStore
from docllm.serving.exceptions import NoModelDeployedError
from docllm.settings import Settings

ENDPOINTS_PK = "endpoints"
#: Context length when neither the record nor the family says (our presets' largest).
DEFAULT_CONTEXT = 2048


def _context_length(family: str) -> int:
    from docllm.training.families import family as family_named

    try:
        return family_named(family).context_length
    except ConfigurationError:
        return DEFAULT_CONTEXT


class CloudDeployer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sagemaker: Any = None

    def _sagemaker_deployer(self) -> Any:
        if self._sagemaker is None:
            from docllm.adapters.aws.sagemaker_deploy import SageMakerDeployer

            self._sagemaker = SageMakerDeployer()
        return self._sagemaker

    def serving(self, target: str, *, model: dict[str, Any]) -> Any:
        """What ``target`` serves for ``model``'s family now (a ``sagemaker_deploy.EndpointServing``,
        ``None`` when there is no endpoint). Only SageMaker endpoints can be asked: a Bedrock import
        has no live configuration to read."""
        if target != "sagemaker":
            raise ConfigurationError(f"what serves on {target!r} cannot be read back (only sagemaker's)")
        from docllm.deploy.names import endpoint_name

        return self._sagemaker_deployer().serving(endpoint_name(self.settings.stage, model["family"]))

    def serving_version(self, target: str, *, model: dict[str, Any]) -> str | None:
        """The one model version ``target`` serves for ``model``'s family once settled, else ``None``
        (DescribeEndpoint → EndpointConfig → Model → its ``docllm:model-version`` tag)."""
        serving = self.serving(target, model=model)
        return serving.version if serving is not None else None

    def deploy(
        self, target: str, *, model_version: str, model: dict[str, Any], guardrails: bool = True
    ) -> dict[str, Any]:
        """Start serving ``model_version`` on ``target``. ``guardrails=False`` (a rollback) leaves the
        endpoint alarms out of the update's ``AutoRollbackConfiguration``."""
        from docllm.deploy.spec import DeploymentSpec, LoraAdapter
        from docllm.service_layer.deploy import adapter_serving

        s = self.settings
        spec = DeploymentSpec(
            model_version=model_version,
            family=model["family"],
            export_uri=model["export_uri"],
            target=target,
            instance_type=s.endpoint_instance_type,
            image_uri=s.serve_image,
            role_arn=s.endpoint_role_arn if target == "sagemaker" else s.bedrock_import_role_arn,
            kms_key_id=s.kms_key_arn,
            subnets=s.subnet_ids,
            security_group_ids=s.security_group_ids,
            max_model_len=_context_length(model["family"]),
            data_capture_uri=f"s3://{s.artifact_bucket}/endpoint-capture/" if target == "sagemaker" else None,
            alarm_names=s.endpoint_alarms if guardrails else [],
            # SageMaker serves a LoRA model as its base with the adapter (vLLM --enable-lora); Bedrock
            # imports the merged export.
            lora_adapter=LoraAdapter.of_model(model) if target == "sagemaker" else None,
        )
        if target == "sagemaker":
            from docllm.adapters.aws.sagemaker_deploy import SageMakerDeployer

            record = SageMakerDeployer().deploy(spec, stage=s.stage)
        elif target == "bedrock":
            from docllm.adapters.aws.bedrock_import import BedrockImporter

            record = BedrockImporter().start_import(spec, stage=s.stage)
        else:
            raise ConfigurationError(f"no AWS deploy target {target!r}")
        return {
            **record.details,
            **adapter_serving(model_version, model, served="adapter" if spec.lora_adapter else "merged"),
            "endpoint": record.endpoint,
            "status": record.status,
            "context_length": spec.max_model_len or DEFAULT_CONTEXT,
        }


class DeployedInference(InferenceEngine):
    """Whatever the target's endpoint record names, looked up per call."""

    def __init__(self, state: StateStore, target: str) -> None:
        self._state = state
        self._target = target

    def _engine(self) -> InferenceEngine:
        record = self._state.get(ENDPOINTS_PK, self._target)
        if not record or record.get("status") not in ("InService", "Completed"):
            raise NoModelDeployedError(f"no model serves on {self._target} yet")
        context = int(record.get("context_length") or DEFAULT_CONTEXT)
        if self._target == "sagemaker":
            from docllm.adapters.aws.sagemaker_inference import SageMakerInference

            return SageMakerInference(record["endpoint"], model_version=record["model_version"], context_length=context)
        if self._target == "bedrock":
            from docllm.adapters.aws.bedrock_inference import BedrockInference

            arn = record.get("imported_model_arn") or record["endpoint"]
            return BedrockInference(arn, model_version=record["model_version"], context_length=context)
        raise NoModelDeployedError(f"deploy target {self._target!r} serves no model")

    def info(self) -> ModelInfo:
        return self._engine().info()

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        return self._engine().generate(prompt, params)

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        return self._engine().stream(prompt, params)


def deployed_inference(state: StateStore, target: str) -> InferenceEngine:
    return DeployedInference(state, target)
