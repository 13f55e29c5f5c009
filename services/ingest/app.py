"""Ingest: S3 "Object Created"/"Object Deleted" (via EventBridge → SQS), or a reprocess request → processed,
duplicate or quarantined."""

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
        # reprocess_id: only reprocess requests carry one (null for S3's events); it keeps two requests apart.
        idempotency_key=(
            '["detail-type", detail.bucket.name, detail.object.key, detail.object."version-id", detail.reprocess_id]'
        ),
    )
