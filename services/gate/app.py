"""Gate: "Evaluation Completed" / "Model Review Submitted" / the registry's "Model Package State Change"
→ a recorded decision, the registry's status and champion, and a signed compliance manifest."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.lambda_support import handle_sqs_events, logger, tracer
from docllm.service_layer import gate


# The whole detail is the key: a state change carries its LastModifiedTime, so a new change
# of the same package is new work while a redelivery of the same one is not.
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_sqs_events(event, context, gate.handle_gate_event, idempotency_key='["detail-type", detail]')
