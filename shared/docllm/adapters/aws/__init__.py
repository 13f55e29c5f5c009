"""AWS adapters of every port (S3, EventBridge, SQS, DynamoDB, CloudWatch EMF, SageMaker).

Each adapter takes an optional boto3 client and builds one on first use, so
importing this package creates no client and needs no credentials. SDK
errors come out as :mod:`docllm.exceptions` types (see :mod:`.errors`).
The OpenSearch adapter lives in :mod:`.opensearch`.
"""

from docllm.adapters.aws.dynamodb import DynamoStateStore
from docllm.adapters.aws.eventbridge import EventBridgeBus
from docllm.adapters.aws.metrics import PowertoolsMetrics
from docllm.adapters.aws.s3 import S3ObjectStore
from docllm.adapters.aws.sagemaker import SageMakerJobRunner, build_create_training_job_request
from docllm.adapters.aws.sqs import SqsQueue

__all__ = [
    "DynamoStateStore",
    "EventBridgeBus",
    "PowertoolsMetrics",
    "S3ObjectStore",
    "SageMakerJobRunner",
    "SqsQueue",
    "build_create_training_job_request",
]
