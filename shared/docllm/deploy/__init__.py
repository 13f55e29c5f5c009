"""Deployment targets: what a deployment asks for, and the pure AWS request builders.

``local`` is served by the engine ``docllm up`` supervises; ``sagemaker`` is a
real-time endpoint on the ``containers/serve`` image; ``bedrock`` is a Custom
Model Import. Adapters (``adapters/aws/sagemaker_deploy.py``,
``adapters/aws/bedrock_import.py``) send these requests; nothing here imports boto3.
"""

from docllm.deploy.bedrock import SUPPORTED_ARCHITECTURES, bedrock_import_request, bedrock_refusal
from docllm.deploy.names import endpoint_name, versioned_name
from docllm.deploy.sagemaker import (
    AutoscalingRequests,
    SageMakerNames,
    SageMakerRequests,
    build_autoscaling_requests,
    build_sagemaker_requests,
    sagemaker_names,
)
from docllm.deploy.spec import DeploymentRecord, DeploymentSpec, DeployTarget

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "AutoscalingRequests",
    "DeployTarget",
    "DeploymentRecord",
    "DeploymentSpec",
    "SageMakerNames",
    "SageMakerRequests",
    "bedrock_import_request",
    "bedrock_refusal",
    "build_autoscaling_requests",
    "build_sagemaker_requests",
    "endpoint_name",
    "sagemaker_names",
    "versioned_name",
]
