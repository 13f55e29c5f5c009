"""API: search, documents and status over HTTP (API Gateway HTTP API, IAM-authenticated)."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from docllm.api.routes import app, create_app
from docllm.bootstrap import build_platform
from docllm.lambda_support import logger, tracer

ApiHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def make_handler(resolver: APIGatewayHttpResolver | None = None) -> ApiHandler:
    """The function's handler over ``resolver``, else over a resolver of its own.

    Lambda invokes one event at a time per execution environment and calls ``handler`` below, over
    the module's one resolver. The local API front answers requests on several threads at once and
    calls this once per thread: a resolver holds the request it is resolving, so none is shared.
    """
    resolver = resolver if resolver is not None else create_app()

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @tracer.capture_lambda_handler
    def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            return resolver.resolve(event, context)
        finally:
            # What Powertools' log_metrics does per invocation: the request's buffered metrics go out
            # with it (on AWS the undimensioned ones; locally all of them, which the alarms then see).
            try:
                build_platform().metrics.flush()
            except Exception:  # a metric refused never turns an answer into an error
                logger.exception("could not flush this request's metrics")

    return handle


handler = make_handler(app)
