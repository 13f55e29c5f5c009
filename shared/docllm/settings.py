"""Platform settings, read once from the environment.

The same variable names are set by ``template.yaml`` (Globals) on AWS and by
the local runtime, which resolves the template's values to local resources.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

DEFAULT_DATA_DIR = ".docllm"


def data_dir_from_env(explicit: str | Path | None = None) -> Path:
    """``--data-dir`` beats ``DOCLLM_DATA_DIR`` beats ``./.docllm``."""
    raw = explicit or os.environ.get("DOCLLM_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(raw).expanduser().resolve()


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class Settings(BaseModel):
    backend: Literal["aws", "local"] = Field(description="which adapters bootstrap picks")
    stage: str = "dev"
    data_dir: Path | None = Field(default=None, description="local backend only: where all state lives")
    raw_bucket: str
    processed_bucket: str
    artifact_bucket: str
    state_table: str
    idempotency_table: str
    event_bus: str
    kms_key_arn: str | None = None
    search_endpoint: str | None = None
    search_service: Literal["es", "aoss"] = "aoss"
    sagemaker_role_arn: str | None = None
    sagemaker_evaluate_role_arn: str | None = Field(
        default=None,
        description="role of evaluation jobs (they run user-supplied benchmarks, so it may write evaluations/ "
        "only); unset: sagemaker_role_arn",
    )
    image_tokenizer: str | None = None
    image_train: str | None = None
    image_evaluate: str | None = None
    compliance_bucket: str = Field(default="ComplianceBucket", description="write-once store of compliance manifests")
    signing_key_arn: str | None = Field(default=None, description="AWS: the KMS asymmetric key that signs manifests")
    manifest_retention_days: int = Field(default=3650, ge=1, description="Object Lock retention of each manifest")
    git_repository: str = Field(default="", description="recorded in the registry and manifests")
    deploy_target: Literal["local", "sagemaker", "bedrock", "none"] = Field(
        default="local", description="where a new champion is deployed; none: only when asked"
    )
    serve_image: str | None = Field(default=None, description="ECR URI of the containers/serve image (SageMaker)")
    endpoint_role_arn: str | None = Field(default=None, description="execution role of SageMaker endpoints")
    bedrock_import_role_arn: str | None = Field(default=None, description="service role of Bedrock model imports")
    endpoint_instance_type: str = "ml.g5.xlarge"
    endpoint_alarms: list[str] = Field(default_factory=list, description="alarms that roll a blue/green update back")
    subnet_ids: list[str] = Field(default_factory=list)
    security_group_ids: list[str] = Field(default_factory=list)
    metrics_namespace: str = "docllm"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        backend = env.get("DOCLLM_BACKEND", "local")
        data_dir = data_dir_from_env(env.get("DOCLLM_DATA_DIR")) if backend == "local" else None
        return cls(
            backend=backend,
            stage=env.get("DOCLLM_STAGE", "dev"),
            data_dir=data_dir,
            raw_bucket=env.get("DOCLLM_RAW_BUCKET", "RawBucket"),
            processed_bucket=env.get("DOCLLM_PROCESSED_BUCKET", "ProcessedBucket"),
            artifact_bucket=env.get("DOCLLM_ARTIFACT_BUCKET", "ArtifactBucket"),
            state_table=env.get("DOCLLM_STATE_TABLE", "StateTable"),
            idempotency_table=env.get("DOCLLM_IDEMPOTENCY_TABLE", "IdempotencyTable"),
            event_bus=env.get("DOCLLM_EVENT_BUS", "DocllmBus"),
            kms_key_arn=env.get("DOCLLM_KMS_KEY_ARN") or None,
            search_endpoint=env.get("DOCLLM_SEARCH_ENDPOINT") or None,
            search_service=env.get("DOCLLM_SEARCH_SERVICE", "aoss"),
            sagemaker_role_arn=env.get("DOCLLM_SAGEMAKER_ROLE_ARN") or None,
            sagemaker_evaluate_role_arn=env.get("DOCLLM_SAGEMAKER_EVALUATE_ROLE_ARN") or None,
            image_tokenizer=env.get("DOCLLM_IMAGE_TOKENIZER") or None,
            image_train=env.get("DOCLLM_IMAGE_TRAIN") or None,
            image_evaluate=env.get("DOCLLM_IMAGE_EVALUATE") or None,
            compliance_bucket=env.get("DOCLLM_COMPLIANCE_BUCKET", "ComplianceBucket"),
            signing_key_arn=env.get("DOCLLM_SIGNING_KEY_ARN") or None,
            manifest_retention_days=int(env.get("DOCLLM_MANIFEST_RETENTION_DAYS", "3650")),
            git_repository=env.get("DOCLLM_GIT_REPOSITORY", ""),
            deploy_target=env.get("DOCLLM_DEPLOY_TARGET") or ("local" if backend == "local" else "sagemaker"),
            serve_image=env.get("DOCLLM_SERVE_IMAGE") or None,
            endpoint_role_arn=env.get("DOCLLM_ENDPOINT_ROLE_ARN") or None,
            bedrock_import_role_arn=env.get("DOCLLM_BEDROCK_IMPORT_ROLE_ARN") or None,
            endpoint_instance_type=env.get("DOCLLM_ENDPOINT_INSTANCE_TYPE") or "ml.g5.xlarge",
            endpoint_alarms=_csv(env.get("DOCLLM_ENDPOINT_ALARMS")),
            subnet_ids=_csv(env.get("DOCLLM_SUBNET_IDS")),
            security_group_ids=_csv(env.get("DOCLLM_SECURITY_GROUP_IDS")),
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE", "docllm"),
        )
