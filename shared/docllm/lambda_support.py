"""What every SQS-fed handler does the same way: Powertools batch processing with
partial failures, idempotency, correlation ids, metrics flushing.

Kept in one place so that each ``services/*/app.py`` stays three lines long.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.bootstrap import Platform, build_platform

logger = Logger()
tracer = Tracer()

#: messageId -> "ExceptionType: message" of failed records. The local runtime pops
#: it as the dead-letter reason; on AWS the reason is in the logs.
LAST_FAILURES: dict[str, str] = {}

EventHandler = Callable[[Platform, dict[str, Any]], Any]

_STORES: dict[str, BasePersistenceLayer] = {}


def _as_json(result: Any) -> Any:
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    if hasattr(result, "model_dump"):
        return result.model_dump(mode="json")
    return result


def handle_sqs_events(
    event: dict[str, Any],
    context: LambdaContext,
    handle: EventHandler,
    *,
    idempotency_key: str | None = None,
    idempotency_ttl_s: int = 7 * 24 * 3600,
) -> dict[str, Any]:
    """Run ``handle(platform, eventbridge_event)`` for every SQS record of the batch.

    ``idempotency_key`` is a JMESPath into the EventBridge event naming what makes
    two deliveries "the same" (e.g. bucket, key and version id); a repeat
    returns the stored result without running ``handle`` again.
    """
    platform = build_platform()
    processor = BatchProcessor(event_type=EventType.SQS)
    call: Callable[..., Any] = lambda event: _as_json(handle(platform, event))  # noqa: E731
    if idempotency_key:
        # A key expression that finds nothing is a wiring bug: fail loudly instead of silently skipping.
        config = IdempotencyConfig(
            event_key_jmespath=idempotency_key,
            expires_after_seconds=idempotency_ttl_s,
            raise_on_no_idempotency_key=True,
        )
        config.register_lambda_context(context)
        name = f"{context.function_name}.{getattr(handle, '__qualname__', 'handle')}"
        store_key = f"{name}@{platform.settings.data_dir or platform.settings.idempotency_table}"
        if store_key not in _STORES:
            _STORES[store_key] = platform.idempotency_store()
        call = idempotent_function(
            call, data_keyword_argument="event", persistence_store=_STORES[store_key], config=config, key_prefix=name
        )

    @tracer.capture_method
    def record_handler(record: SQSRecord) -> Any:
        body = json.loads(record.body)
        logger.set_correlation_id(body.get("id"))
        result = call(event=body)
        logger.info("handled", extra={"detail_type": body.get("detail-type"), "result": result})
        return result

    try:
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        platform.metrics.flush()
    for (_, exc, _tb), record in zip(processor.exceptions, processor.fail_messages, strict=False):
        message_id = str(getattr(record, "message_id", ""))
        if exc is not None and message_id:
            LAST_FAILURES[message_id] = f"{type(exc).__name__}: {exc}"
            logger.error(
                "record failed",
                extra={"message_id": message_id, "error": "".join(traceback.format_exception(exc))[-2000:]},
            )
    return cast(dict[str, Any], response)
