"""What every SQS-fed handler does the same way: Powertools batch processing with
partial failures, idempotency, correlation ids, metrics flushing, and the outcome
of each error class.

A record that fails with a :class:`~docllm.exceptions.PermanentError` (or a pydantic
``ValidationError``, or a body that is not a JSON event: both contract errors) is
sent to its queue's DLQ at once, with the reason, and reported done so that the
queue does not deliver it again; any other error is reported as a batch item
failure, which the queue delivers again (locally after a backoff, under Lambda after
the visibility timeout) and dead-letters after ``maxReceiveCount`` receives. The DLQ is reached through the platform's
:class:`~docllm.ports.queue.Queue` (SQS on AWS, where the function's
``DOCLLM_DEAD_LETTER_QUEUE`` names it; the runtime's SQLite queue locally).

Log records carry the keys of the invocation that wrote them (function name, request id,
correlation id) from the *thread's* invocation, not from the ``Logger``'s shared state: under
``docllm up`` every handler shares this one ``Logger`` while worker threads invoke them at once,
and the keys ``inject_lambda_context`` and ``set_correlation_id`` keep there belong to whichever
invocation wrote last (see :func:`invocation_log_keys`).

Kept in one place so that each ``services/*/app.py`` stays three lines long.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from pydantic import ValidationError

from docllm.bootstrap import Platform, build_platform
from docllm.exceptions import ContractError, PermanentError
from docllm.ports.queue import Message

logger = Logger()
tracer = Tracer()

_INVOCATION = threading.local()


class _InvocationKeys(logging.Filter):
    """Stamps each record with its thread's invocation keys. Powertools puts a record's own
    attributes (``extra``) over the logger's shared keys, so these win; a key the call passed
    in ``extra`` itself wins over them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (getattr(_INVOCATION, "keys", None) or {}).items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


logger.addFilter(_InvocationKeys())


@contextmanager
def invocation_log_keys(context: Any, **keys: Any) -> Iterator[dict[str, Any]]:
    """Within the block, this thread's records name the invocation of ``context`` (a Lambda
    context): its function and request id, and ``keys`` (e.g. ``correlation_id``). The yielded
    dict may be updated meanwhile (the correlation id of each record of a batch). Nests: the
    outer invocation's keys come back on exit."""
    current = {
        "function_name": getattr(context, "function_name", None),
        "function_request_id": getattr(context, "aws_request_id", None),
        "function_arn": getattr(context, "invoked_function_arn", None),
        "function_memory_size": getattr(context, "memory_limit_in_mb", None),
        **keys,
    }
    outer = getattr(_INVOCATION, "keys", None)
    _INVOCATION.keys = current
    try:
        yield current
    finally:
        _INVOCATION.keys = outer


def _set_correlation_id(value: str | None) -> None:
    """The correlation id of the record being handled, for this thread's invocation only."""
    keys = getattr(_INVOCATION, "keys", None)
    if keys is not None:
        keys["correlation_id"] = value
    else:  # not inside an invocation of ours: Powertools' own (shared) key, as before
        logger.set_correlation_id(value)


#: messageId -> "ExceptionType: message" of failed records. The local runtime pops
#: it as the dead-letter reason; on AWS the reason is in the logs.
LAST_FAILURES: dict[str, str] = {}

#: Errors that retrying cannot cure: the record goes to the DLQ on its first failure.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (PermanentError, ValidationError)

EventHandler = Callable[[Platform, dict[str, Any]], Any]

_STORES: dict[str, BasePersistenceLayer] = {}


def _as_json(result: Any) -> Any:
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    if hasattr(result, "model_dump"):
        return result.model_dump(mode="json")
    return result


def reason_of(exc: BaseException) -> str:
    """How a failure is named in the DLQ: ``"ExceptionType: message"``."""
    return f"{type(exc).__name__}: {exc}"


def _event_of(record: SQSRecord) -> dict[str, Any]:
    try:
        body = json.loads(record.body)
    except ValueError as e:
        raise ContractError(f"the message body is not JSON: {e}") from e
    if not isinstance(body, dict):
        raise ContractError(f"the message body is a JSON {type(body).__name__}, not an event")
    return body


def _message_of(record: SQSRecord) -> Message:
    attrs = record.attributes
    first = attrs.get("ApproximateFirstReceiveTimestamp")
    return Message(
        message_id=record.message_id,
        body=record.body,
        receipt=record.receipt_handle,
        receive_count=int(attrs.get("ApproximateReceiveCount") or 1),
        sent_at_ms=int(attrs.get("SentTimestamp") or 0),
        first_received_at_ms=int(first) if first else None,
        attributes={k: v.string_value for k, v in record.message_attributes.items() if v.string_value is not None},
    )


def _dead_letter(platform: Platform, record: SQSRecord, exc: BaseException) -> None:
    """Send a permanently failed record to its queue's DLQ; re-raise ``exc`` when that fails,
    so that the record is retried as any failure is (and reaches the DLQ by the redrive policy)."""
    reason = reason_of(exc)
    # arn:aws:sqs:<region>:<account>:<queue name>; the local runtime sends arn:aws:sqs:local:000000000000:<queue>.
    queue = (record.event_source_arn or "").rsplit(":", 1)[-1]
    if not queue:
        logger.error("cannot dead-letter a record without eventSourceARN", extra={"message_id": record.message_id})
        raise exc
    try:
        platform.queue.dead_letter(queue, _message_of(record), reason=reason)
    except Exception:
        logger.exception(
            "could not dead-letter a permanently failed record: it will be retried",
            extra={"message_id": record.message_id, "queue": queue, "reason": reason},
        )
        raise exc from None
    logger.error(
        "record dead-lettered: retrying cannot help",
        extra={
            "message_id": record.message_id,
            "queue": queue,
            "reason": reason,
            "error": "".join(traceback.format_exception(exc))[-2000:],
        },
    )


def _announce_failure(platform: Platform, handle: EventHandler, record: SQSRecord, exc: BaseException) -> None:
    """A request someone waits on (its event carries a ``request_id``: ``docllm dataset build``,
    ``docllm train``) failed for good: say so with "Stage Failed", so the waiting verb answers in
    seconds with the reason instead of waiting for its timeout."""
    from docllm.events.contracts import StageFailed
    from docllm.service_layer.outbox import commit

    if getattr(exc, "announced", False):
        return  # the stage published its own "Stage Failed" (a job launch refused)
    try:
        body = json.loads(record.body)
        request_id = (body.get("detail") or {}).get("request_id")
    except (ValueError, AttributeError):
        return
    if not request_id:
        return
    stage = getattr(handle, "__module__", "").rsplit(".", 1)[-1] or "unknown"
    failed = StageFailed(
        stage=stage, subject=str(body.get("detail-type")), reason=reason_of(exc)[:2000], request_id=str(request_id)
    )
    try:
        commit(platform, [], [failed])
    except Exception:  # the record is dead-lettered already; its reason is there too
        logger.exception("could not announce a failed request", extra={"request_id": request_id})


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
    returns the stored result without running ``handle`` again. Only successes are
    stored: a failure, permanent or not, releases the key, so a redrive from the
    DLQ runs ``handle`` again.
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
        _set_correlation_id(None)  # not the previous record's, should this body not parse
        try:
            body = _event_of(record)
            _set_correlation_id(body.get("id"))
            # The idempotency wrapper is inside ``call``: it has released the key by the time we get here.
            result = call(event=body)
        except PERMANENT_ERRORS as e:
            _dead_letter(platform, record, e)
            _announce_failure(platform, handle, record, e)
            return None
        logger.info("handled", extra={"detail_type": body.get("detail-type"), "result": result})
        return result

    with invocation_log_keys(context, correlation_id=None):
        try:
            response = process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
        finally:
            _set_correlation_id(None)  # what follows is about the batch, not its last record
            # Also when the whole batch failed (Powertools then raises): each record keeps its own reason.
            _remember_failures(processor)
            platform.metrics.flush()
    return cast(dict[str, Any], response)


def _remember_failures(processor: BatchProcessor) -> None:
    for (_, exc, _tb), record in zip(processor.exceptions, processor.fail_messages, strict=False):
        message_id = str(getattr(record, "message_id", ""))
        if exc is not None and message_id:
            LAST_FAILURES[message_id] = reason_of(exc)
            logger.error(
                "record failed",
                extra={"message_id": message_id, "error": "".join(traceback.format_exception(exc))[-2000:]},
            )
