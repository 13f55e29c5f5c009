"""Train: "Shards Built" / "Training Requested" / "Dataset Built" (LoRA, Bedrock) → a training job of a family."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.lambda_support import handle_sqs_events, logger, tracer
from docllm.service_layer import train


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_sqs_events(event, context, train.handle_train_event, idempotency_key='["detail-type", detail]')
