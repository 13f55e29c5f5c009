"""Outbox relay: the state table's stream (INSERTs under ``pk = outbox``) → the events on the bus;
and, every few minutes, a sweep of entries older than a minute (what the stream relay gave up on).

The backstop of the transactional outbox (``docllm.service_layer.outbox``): what the committing
stage could not publish itself (the bus refused, the function died) is published from here.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.bootstrap import build_platform
from docllm.lambda_support import logger, tracer
from docllm.service_layer import outbox

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
SWEEP_MIN_AGE_S = 60.0


def relay(record: DynamoDBRecord) -> bool:
    assert record.dynamodb is not None
    return outbox.relay_entry(build_platform(), str(record.dynamodb.keys["sk"]))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" not in event:  # the scheduled sweep ("Scheduled Event" from EventBridge)
        return {"relayed": outbox.relay(build_platform(), min_age_s=SWEEP_MIN_AGE_S)}
    return process_partial_response(event=event, record_handler=relay, processor=processor, context=context)
