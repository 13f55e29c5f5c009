"""Rollback: "CloudWatch Alarm State Change" of a serving alarm → the last known good version serves
again (verified) and an incident records it; "Incident Close Requested" → the incident closed."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.lambda_support import handle_sqs_events, logger, tracer
from docllm.service_layer import rollback

#: One alarm state change (CloudWatch's timestamp of the state, and its value), or one close request.
IDEMPOTENCY_KEY = '["detail-type", detail.alarmName, detail.state.timestamp, detail.state.value, detail.request_id]'


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_sqs_events(event, context, rollback.handle_rollback_event, idempotency_key=IDEMPOTENCY_KEY)
