"""Retriever: "Tokenizer Trained" (a family with a retriever section) or a request → a dual-encoder job."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.lambda_support import handle_sqs_events, logger, tracer
from docllm.service_layer import retriever


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_sqs_events(
        event,
        context,
        retriever.handle_request,
        idempotency_key='["detail-type", detail]',
    )
