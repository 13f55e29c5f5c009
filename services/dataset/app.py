"""Dataset: "Dataset Build Requested" → an immutable dataset version → "Dataset Built"."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.lambda_support import handle_sqs_events, logger, tracer
from docllm.service_layer import dataset


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_sqs_events(
        event,
        context,
        dataset.handle_build_request,
        idempotency_key='["detail-type", detail]',
    )
