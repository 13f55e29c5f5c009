"""Ingest: S3 "Object Created"/"Object Deleted" (via EventBridge → SQS) → processed or quarantined."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.lambda_support import handle_sqs_events, logger, tracer
from docllm.service_layer import ingest


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_sqs_events(
        event,
        context,
        ingest.handle_object_event,
        idempotency_key='["detail-type", detail.bucket.name, detail.object.key, detail.object."version-id"]',
    )
