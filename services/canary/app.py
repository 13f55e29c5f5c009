"""Canary: "Canary Run Requested" (EventBridge Scheduler, every 5 minutes, invoking this function directly
with the event as its payload; no queue) → the canary questions asked of the live model, scored,
published as metrics and recorded (``docllm.service_layer.canary``)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.bootstrap import build_platform
from docllm.lambda_support import invocation_log_keys, logger, tracer
from docllm.service_layer import canary

#: Seconds of the function's timeout not spent starting questions: the last one asked may take up to a
#: SageMaker invocation's own limit (60 s), and scoring, publishing and recording follow it.
MARGIN_S = 70.0


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    budget_s = min(canary.DEFAULT_BUDGET_S, context.get_remaining_time_in_millis() / 1000 - MARGIN_S)
    with invocation_log_keys(context, correlation_id=event.get("id")):
        return canary.handle_canary_event(build_platform(), event, budget_s=max(0.0, budget_s))
