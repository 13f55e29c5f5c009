"""The model registry's domain (models, SageMaker metadata mapping) and the quality gate's rules.

Pure: no boto3, no SQLite. The port is :mod:`docllm.ports.registry`; the adapters are
:mod:`docllm.adapters.local.registry` and :mod:`docllm.adapters.aws.sagemaker_registry`.
"""
