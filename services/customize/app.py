"""Customize: Bedrock "Model Customization Job State Change" → "Model Trained", or "Stage Failed"."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.lambda_support import handle_sqs_events, logger, tracer
from docllm.service_layer import customize


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_sqs_events(
        event, context, customize.handle_customization_event, idempotency_key="[detail.jobName, detail.jobStatus]"
    )
