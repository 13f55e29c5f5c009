"""Deploy: "Model Approved" (a new champion) / "Deployment Requested" → the model serving on a target."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.lambda_support import handle_sqs_events, logger, tracer
from docllm.service_layer import deploy


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_sqs_events(event, context, deploy.handle_deploy_event, idempotency_key='["detail-type", detail]')
