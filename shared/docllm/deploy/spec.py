"""What a deployment asks for (:class:`DeploymentSpec`) and what it did (:class:`DeploymentRecord`).

Pure data: the SageMaker and Bedrock request builders read a spec, the deployer
records a record in the lineage. Nothing here talks to AWS or reads the
environment; the service layer fills the AWS fields from :mod:`docllm.settings`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from docllm.exceptions import ConfigurationError

DeployTarget = Literal["local", "sagemaker", "bedrock"]
"""Where a model version is served: ``docllm up``'s engine, a SageMaker endpoint, Bedrock."""

TrafficShift = Literal["canary", "linear", "all_at_once"]
"""How a blue/green update moves traffic from the old fleet to the new one."""

#: Environment keys a spec may add to the serving container: the vLLM entry script's conventions.
CONTAINER_ENV_PREFIXES = ("SM_VLLM_", "OPTION_")


#: Where SageMaker puts an ``AdditionalModelDataSources`` channel in the serving container.
ADDITIONAL_MODEL_DATA = "/opt/ml/additional-model-data-sources"
#: The channel of a LoRA adapter served beside its base.
ADAPTER_CHANNEL = "adapter"


class LoraAdapter(BaseModel):
    """A LoRA model served as its base plus the adapter (vLLM ``--enable-lora --lora-modules``)
    rather than as the merged export: one copy of the base weights, the adapter loaded beside it.

    The adapter is served under the model version's name, which is what a request naming no model
    gets (the serving image fills ``model`` in); the base under its own name.

    >>> a = LoraAdapter(adapter_uri="s3://art/models/f/v2/adapter/", base_uri="s3://art/models/b/v1/hf/",
    ...                 base_name="v1", max_rank=8)
    >>> a.vllm_args("v2", "/adapters/v2")
    ['--enable-lora', '--max-lora-rank', '8', '--max-loras', '1', '--lora-modules', 'v2=/adapters/v2']
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    adapter_uri: str = Field(min_length=1, description="the PEFT adapter directory (adapter_config.json, weights)")
    base_uri: str = Field(min_length=1, description="the base model's Hugging Face export")
    base_name: str = Field(min_length=1, description="the base's served name (its model version, or 'base')")
    max_rank: int = Field(ge=1, le=512, description="vLLM --max-lora-rank: at least the adapter's r")

    def vllm_args(self, name: str, adapter_dir: str) -> list[str]:
        """vLLM's flags serving the adapter in ``adapter_dir`` as ``name``."""
        return ["--enable-lora", "--max-lora-rank", str(vllm_lora_rank(self.max_rank)), "--max-loras", "1",
                "--lora-modules", f"{name}={adapter_dir}"]  # fmt: skip

    @classmethod
    def of_model(cls, model: dict[str, Any]) -> LoraAdapter | None:
        """The adapter serving of a model record (``service_layer/train_lora.py``), None for other methods."""
        if model.get("method") != "lora" or not model.get("adapter_uri") or not model.get("base_model_uri"):
            return None
        return cls(
            adapter_uri=str(model["adapter_uri"]),
            base_uri=str(model["base_model_uri"]),
            base_name=str(model.get("base_model_version") or "base"),
            max_rank=int(model.get("r") or 8),
        )


#: The ranks vLLM accepts for --max-lora-rank.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_lora_rank(r: int) -> int:
    """The smallest rank vLLM accepts as ``--max-lora-rank`` that holds an adapter of rank ``r``.

    >>> vllm_lora_rank(4), vllm_lora_rank(8), vllm_lora_rank(12)
    (8, 8, 16)
    """
    return next(rank for rank in VLLM_LORA_RANKS if rank >= r)


class DeploymentSpec(BaseModel):
    """One model version to put behind one target.

    Fields a target does not use are ignored by it (``local`` needs only the
    version and the export); :meth:`require` names the missing ones a target needs.

    Examples
    --------
    >>> spec = DeploymentSpec(model_version="v7", family="tiny", export_uri="s3://art/models/tiny/v7/hf/",
    ...                       target="bedrock", role_arn="arn:aws:iam::123456789012:role/import")
    >>> spec.require("role_arn")
    """

    model_config = ConfigDict(extra="forbid")

    model_version: str = Field(min_length=1, description="registry version being deployed")
    family: str = Field(min_length=1, description="model family (families.yaml); names the endpoint")
    export_uri: str = Field(
        min_length=1, description="the Hugging Face export: an s3:// prefix on AWS, a directory locally"
    )
    target: DeployTarget

    # --- SageMaker placement and identity
    instance_type: str = Field("ml.g5.xlarge", description="endpoint instance type (one GPU for vLLM)")
    instance_count: int = Field(1, ge=1, description="initial instances of the variant")
    image_uri: str | None = Field(None, description="ECR URI of the containers/serve image")
    role_arn: str | None = Field(None, description="execution role (SageMaker) or service role (Bedrock import)")
    kms_key_id: str | None = Field(None, description="KMS key: endpoint volumes, data capture, imported model")
    subnets: list[str] = Field(default_factory=list, description="VPC subnets of the endpoint (or import job)")
    security_group_ids: list[str] = Field(default_factory=list)

    # --- What the container runs
    max_model_len: int | None = Field(None, ge=16, description="vLLM --max-model-len; None: the export's")
    dtype: str = Field("bfloat16", description="vLLM --dtype")
    environment: dict[str, str] = Field(
        default_factory=dict, description="extra SM_VLLM_* / OPTION_* variables for the entry script"
    )
    lora_adapter: LoraAdapter | None = Field(
        None, description="a LoRA model: serve the base with the adapter (SageMaker), not the merged export"
    )

    # --- Observability
    data_capture_uri: str | None = Field(None, description="s3:// prefix for captured requests/responses")
    data_capture_percent: int = Field(100, ge=0, le=100, description="share of invocations captured")

    # --- Blue/green update of an existing endpoint
    traffic_shift: TrafficShift = "canary"
    shift_percent: int = Field(
        10, ge=1, le=50, description="canary size, or linear step, as a percent of the fleet's capacity"
    )
    shift_wait_s: int = Field(600, ge=0, le=3600, description="bake time after each traffic step")
    termination_wait_s: int = Field(300, ge=0, le=3600, description="old fleet kept after full shift")
    max_update_s: int = Field(3600, ge=600, le=28800, description="whole update must finish within this")
    alarm_names: list[str] = Field(
        default_factory=list, max_length=10, description="CloudWatch alarms that roll an update back"
    )

    # --- Autoscaling (application-autoscaling on the variant)
    autoscaling_min: int = Field(1, ge=1)
    autoscaling_max: int = Field(2, ge=1)
    target_invocations_per_instance: float | None = Field(
        30.0, gt=0, description="target tracking on SageMakerVariantInvocationsPerInstance; None: no autoscaling"
    )
    scale_in_cooldown_s: int = Field(600, ge=0)
    scale_out_cooldown_s: int = Field(120, ge=0)

    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("environment")
    @classmethod
    def _container_keys_only(cls, env: dict[str, str]) -> dict[str, str]:
        # The entry script reads only these prefixes; anything else would be silently ignored there.
        wrong = sorted(k for k in env if not k.startswith(CONTAINER_ENV_PREFIXES))
        if wrong:
            raise ValueError(f"environment keys must start with {' or '.join(CONTAINER_ENV_PREFIXES)}: {wrong}")
        return env

    @model_validator(mode="after")
    def _scaling_bounds(self) -> DeploymentSpec:
        if self.autoscaling_min > self.autoscaling_max:
            raise ValueError(f"autoscaling_min ({self.autoscaling_min}) > autoscaling_max ({self.autoscaling_max})")
        if self.traffic_shift == "linear" and self.shift_percent < 10:
            # Linear steps below 10% of the fleet make an update of many tiny steps; keep them meaningful.
            raise ValueError(f"linear shift_percent must be 10-50, got {self.shift_percent}")
        return self

    def require(self, *fields: str) -> None:
        """Raise :class:`ConfigurationError` naming every field in ``fields`` that is empty.

        Examples
        --------
        >>> DeploymentSpec(model_version="v1", family="f", export_uri="s3://b/p/", target="sagemaker").require(
        ...     "image_uri")
        Traceback (most recent call last):
        ...
        docllm.exceptions.ConfigurationError: sagemaker deployment of v1 needs: image_uri
        """
        missing = [f for f in fields if not getattr(self, f)]
        if missing:
            raise ConfigurationError(f"{self.target} deployment of {self.model_version} needs: {', '.join(missing)}")


DeploymentStatus = Literal["InProgress", "InService", "Completed", "Failed", "RolledBack"]


class DeploymentRecord(BaseModel):
    """What a deployment did, as the lineage keeps it.

    ``endpoint`` is what a client calls: the SageMaker endpoint name, the Bedrock
    import job ARN until the import completes (then the imported model ARN, in
    ``details["imported_model_arn"]``), or the local engine's URL.
    """

    target: DeployTarget
    model_version: str
    previous_version: str | None = None
    endpoint: str
    status: DeploymentStatus
    started_at: datetime
    finished_at: datetime | None = None
    details: dict[str, Any] = Field(default_factory=dict)
