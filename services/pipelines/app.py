"""Pipelines: document changes → stale families; the 5-minute tick → runs started after their debounce
or on their schedule; "Pipeline Run|Cancel Requested" → a run started (superseding) or cancelled; the
run's chain events → its stage and outcome (``docllm.service_layer.pipelines``)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.lambda_support import handle_sqs_events, logger, tracer
from docllm.service_layer import pipelines


# No idempotency key: the scheduler's tick is the same message every time, so a key over the event would
# swallow every tick after the first; each input is idempotent in the domain instead (document revisions,
# run ids, ended runs). The function's reserved concurrency of 1 serialises the family records' updates.
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_sqs_events(event, context, pipelines.handle_pipelines_event)
