"""Routes of the HTTP API. The handler in ``services/api/app.py`` only resolves events here.

Client faults answer 4xx with a message that says what was wrong. A query that
fails validation is a **400**, whichever check refused it — Powertools' request
validation (a missing ``q``, ``k`` out of range or not a number) or our own rules
(a control character, an unknown service:
:class:`~docllm.exceptions.InvalidRequestError`) — with ``message`` and, for
field errors, ``errors: [{field, message}]``; a client never has to tell 400 from
422. A path no route has is ``404 {"message": "Not Found"}`` (API Gateway's shape;
a trailing slash is another path), a known path with another method ``405`` with
``Allow``. User input never produces a 5xx. Everything else is a server fault — a configuration or
AWS error (AccessDenied…), a corrupt record, a bug — and answers 500 with only
a request id (API Gateway's ``requestContext.requestId``, else Lambda's
``aws_request_id``); the full error is logged with that id.

``POST /v1/ask`` (docs/answers.md) adds the engine's statuses: busy **429** with ``Retry-After``
(also the per-caller rate limit), no model deployed or engine unreachable **503**, a model other than
the deployed one **409**, a body over :data:`MAX_ASK_BODY` **413**. An answer that abstains is a 200.
With ``stream: true`` the 200 is ``text/event-stream`` (``delta`` events, then the ``answer``): streamed
as it comes where the front hands the handler a ``response_stream`` (the local API front), one buffered
body behind API Gateway + Lambda. Every ``POST /v1/ask`` is measured, whatever answers it
(:mod:`docllm.monitoring.ask_metrics`).

Powertools keeps the request being resolved (``current_event``, ``lambda_context``) where the
routes, middlewares and error handlers read it back through the resolver, so a resolver answers one
request at a time. :func:`create_app` builds one: the Lambda uses the module's :data:`app` (one per
execution environment, which Lambda invokes one event at a time); the local API front builds one per
worker thread (``services/api/app.py`` ``make_handler``). Everything here that reads the current
request is therefore given its resolver, never a module-level one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Protocol, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from docllm import __version__
from docllm.answers.exceptions import ModelMismatchError, RateLimitedError
from docllm.answers.limits import DEFAULT_BURST, DEFAULT_RATE, RateLimiter
from docllm.answers.models import Answer, AskRequest
from docllm.answers.service import AnswerEvent, answer_question, stream_answer
from docllm.bootstrap import build_platform
from docllm.exceptions import InvalidRequestError
from docllm.lambda_support import logger
from docllm.monitoring.ask_metrics import AskObservation, TimedEngine, record_ask
from docllm.records import DOCS_PK, DocumentRecord
from docllm.search.api import MAX_QUERY_CHARS, SearchQuery, run_search
from docllm.search.exceptions import UnknownServiceError
from docllm.serving.exceptions import EngineBusyError, EngineUnavailableError, NoModelDeployedError


class RequestScopedResolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver, keeping the request it resolves on *this* resolver.

    ``APIGatewayHttpResolver.resolve`` stores the event and context on the class ``BaseRouter``, which
    every resolver of the process shares, and reads them back through the instance
    (``app.current_event``). Under Lambda, one invocation at a time, that is all the same; on the local
    API front several threads resolve at once, each with a resolver of its own, and a class attribute
    would hand one request another's event. This ``resolve`` sets them on the instance, where the same
    reads find them; otherwise it is Powertools' (its ``_resolve``, ``_build_response`` and
    ``clear_context``: tests/integration/runtime/test_local_api_concurrency.py notices if they change).
    A Powertools ``Router`` (``include_router``) reads the class attributes: this API includes none.
    """

    #: What the ``POST /v1/ask`` being resolved did (None for any other request): its metrics.
    ask_observation: AskObservation | None = None

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        if isinstance(event, BaseProxyEvent):  # Powertools accepts a wrapped event too
            event = event.raw_event
        self.current_event = cast(APIGatewayProxyEventV2, self._to_proxy_event(dict(event)))
        self.lambda_context = context
        # Every POST /v1/ask is measured, whatever answers it: the route, a validation error, a fault.
        asking = self.current_event.path == ASK_PATH and self.current_event.http_method.upper() == "POST"
        self.ask_observation = AskObservation() if asking else None
        status = 500
        try:
            response = self._build_response(self._resolve())
            status = int(response.get("statusCode", 200))
            return response
        finally:
            if self.ask_observation is not None:
                _record_ask(self.ask_observation, status)
            self.ask_observation = None
            self.clear_context()


class InvalidParametersError(InvalidRequestError):
    """Parameters that pass the OpenAPI checks but not the query model's own rules."""

    def __init__(self, e: ValidationError) -> None:
        self.errors = [{"field": ".".join(str(x) for x in err["loc"]), "message": err["msg"]} for err in e.errors()]
        super().__init__("; ".join(f"{x['field']}: {x['message']}" for x in self.errors))


#: Errors that are the caller's fault; their messages are written to be shown.
CLIENT_ERRORS: list[type[Exception]] = [InvalidRequestError, UnknownServiceError]


def _bad_request(e: Exception) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"message": str(e)}
    if isinstance(e, InvalidParametersError):
        body["errors"] = e.errors
    return Response(status_code=400, content_type=content_types.APPLICATION_JSON, body=body)


def _no_route(app: APIGatewayHttpResolver, _e: NotFoundError) -> Response[dict[str, str]]:
    """404 as API Gateway answers it; 405 with ``Allow`` when the path is a route's under another method."""
    event = app.current_event
    method, path = event.http_method.upper(), event.path
    routes = app._static_routes + app._dynamic_routes  # Powertools keeps no public list of them
    allowed = sorted({r.method for r in routes if r.rule.match(path)})
    if allowed and method not in allowed:  # else a route itself said "not found"
        return Response(
            status_code=405,
            content_type=content_types.APPLICATION_JSON,
            body={"message": "Method Not Allowed"},
            headers={"Allow": ", ".join(allowed)},
        )
    return Response(status_code=404, content_type=content_types.APPLICATION_JSON, body={"message": "Not Found"})


def _powertools_answer(e: Exception) -> Response[Any]:
    raise e  # Powertools' own status and message (404, 415…), not a server fault


def request_id(app: APIGatewayHttpResolver) -> str:
    """API Gateway's request id (what the caller sees as ``apigw-requestid``), else Lambda's."""
    return event_request_id(app.current_event, app.lambda_context)


def event_request_id(event: BaseProxyEvent, context: Any) -> str:
    """:func:`request_id` of ``event`` invoked with ``context``."""
    request_context = event.raw_event.get("requestContext") or {}
    return str(request_context.get("requestId") or getattr(context, "aws_request_id", None) or "unknown")


def _server_fault(app: APIGatewayHttpResolver, e: Exception) -> Response[dict[str, str]]:
    rid = request_id(app)
    logger.error(
        "request failed",
        exc_info=e,
        extra={
            "request_id": rid,
            "aws_request_id": getattr(app.lambda_context, "aws_request_id", None),
            "route": app.current_event.raw_event.get("routeKey"),
            "error": f"{type(e).__name__}: {e}",
        },
    )
    return Response(
        status_code=500,
        content_type=content_types.APPLICATION_JSON,
        body={"message": "Internal Server Error", "request_id": rid},
    )


def _invalid_request(app: APIGatewayHttpResolver, e: RequestValidationError) -> Response[dict[str, Any]]:
    if (too_large := _body_too_large(app.current_event)) is not None:
        return too_large  # an oversized body is a 413 whether or not it would also fail validation
    errors = [
        {"field": ".".join(str(x) for x in err.get("loc", ())), "message": str(err.get("msg") or err.get("type"))}
        for err in e.errors()
    ]
    return Response(
        status_code=400,  # one status for every query that fails validation, ours or Powertools' (see above)
        content_type=content_types.APPLICATION_JSON,
        body={"message": "; ".join(f"{x['field']}: {x['message']}" for x in errors), "errors": errors},
    )


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


def _too_many(e: Exception) -> Response[dict[str, Any]]:
    if isinstance(e, RateLimitedError):
        return _json(429, {"message": str(e)}, {"Retry-After": str(max(1, math.ceil(e.retry_after_s)))})
    return _json(429, {"message": "the model is busy: retry shortly"}, {"Retry-After": str(ENGINE_RETRY_AFTER_S)})


def _no_engine(app: APIGatewayHttpResolver, e: Exception) -> Response[dict[str, Any]]:
    # The engine's own message may name internal addresses: the caller gets a fixed one, the log the rest.
    logger.warning("no engine to answer", extra={"request_id": request_id(app), "error": f"{type(e).__name__}: {e}"})
    if isinstance(e, NoModelDeployedError):
        message = "no model is deployed to answer questions; deploy an approved model version"
    else:
        message = "the model serving answers is not available: retry later"
    return _json(503, {"message": message}, {"Retry-After": str(ENGINE_RETRY_AFTER_S * 5)})


def _model_mismatch(e: ModelMismatchError) -> Response[dict[str, Any]]:
    return _json(409, {"message": str(e), "deployed_model": e.deployed})


def search(
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="query text")],
    k: Annotated[int, Query(ge=1, le=100, description="number of hits (of documents with group_by=document)")] = 10,
    service: Annotated[str | None, Query(max_length=128, description="only this service")] = None,
    group_by: Annotated[
        str | None, Query(max_length=16, description='"document": k distinct documents, each with its best chunks')
    ] = None,
) -> dict[str, Any]:
    """BM25 search over the indexed chunks; each hit names its document and section."""
    try:
        query = SearchQuery(q=q, k=k, service=service, group_by=group_by)
    except ValidationError as e:  # the caller's input; any other ValidationError is ours (a 500)
        raise InvalidParametersError(e) from e
    # The reader never writes to the index: the API role only has read permissions on it.
    result = run_search(build_platform().search_reader, query)
    # Ungrouped answers keep the shape they always had.
    return result.model_dump(mode="json", exclude=None if query.group_by else {"group_by", "documents"})


ASK_PATH = "/v1/ask"
SSE = "text/event-stream"
MAX_ASK_BODY = 16 * 1024
"""Bytes a ``POST /v1/ask`` body may have: a 2,000-character question fits with room for escapes."""
ENGINE_RETRY_AFTER_S = 1


@functools.cache
def ask_limiter() -> RateLimiter:
    """The per-caller limiter of this process, built on first use from ``DOCLLM_ASK_RATE`` (questions per
    second) and ``DOCLLM_ASK_BURST`` (docllm.answers.limits: defaults and why); tests clear the cache."""
    return RateLimiter(
        rate=float(os.environ.get("DOCLLM_ASK_RATE") or DEFAULT_RATE),
        burst=int(os.environ.get("DOCLLM_ASK_BURST") or DEFAULT_BURST),
    )


def caller_key(event: APIGatewayProxyEventV2) -> str:
    """Who is asking, for the rate limit: the API key presented (hashed), else the IAM principal API
    Gateway authenticated, else the source address."""
    headers = {k.lower(): v for k, v in (event.headers or {}).items()}
    key = headers.get("x-api-key", "")
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
    context = event.raw_event.get("requestContext") or {}
    iam = (context.get("authorizer") or {}).get("iam") or {}
    if iam.get("userArn"):
        return "iam:" + str(iam["userArn"])
    return "ip:" + str((context.get("http") or {}).get("sourceIp") or "unknown")


def _body_too_large(event: APIGatewayProxyEventV2) -> Response[dict[str, Any]] | None:
    if event.path != ASK_PATH:
        return None
    raw = event.body or ""
    size = len(raw) * 3 // 4 if event.is_base64_encoded else len(raw.encode("utf-8"))
    if size <= MAX_ASK_BODY:
        return None
    return _json(413, {"message": f"request body too large: at most {MAX_ASK_BODY} bytes"})


ASK_RESPONSES: dict[int, OpenAPIResponse] = {
    200: {
        "description": (
            "an answer with citations, or an abstention (abstained: true, reason); with stream: true, "
            "server-sent events: `delta` events ({text}), then one `answer` event (the Answer; a client "
            "replaces the text it showed with it), or an `error` event ({message, status, request_id}) when the "
            "engine fails mid-stream"
        ),
        "content": {
            "application/json": {"model": Answer},
            SSE: {"schema": {"type": "string", "description": "text/event-stream: delta… then answer (or error)"}},
        },
    },
    400: {"description": "invalid body, unknown service, prompt too long"},
    409: {"description": "model names a version other than the deployed one"},
    413: {"description": f"body over {MAX_ASK_BODY} bytes"},
    429: {"description": "rate limit or engine queue full; see Retry-After"},
    503: {"description": "no model deployed, or the engine is unreachable; see Retry-After"},
}


class ResponseStream(Protocol):
    """What a front that streams hands the handler as ``context.response_stream`` (the local API front,
    ``runtime/http.py``; Lambda behind API Gateway's HTTP API has none, and the route buffers).

    ``write`` raises :class:`ConnectionError` once the client has gone away."""

    def start(self, status: int, headers: list[tuple[str, str]]) -> None: ...

    def write(self, data: bytes) -> None: ...


def answer_ask(
    event: APIGatewayProxyEventV2,
    request: AskRequest,
    *,
    observation: AskObservation | None = None,
    stream_to: ResponseStream | None = None,
) -> Response[Any]:
    """``POST /v1/ask`` for the request ``event`` carries (its size and its caller) and its parsed body.

    ``observation`` collects what the request did, for its metrics. With ``stream: true`` the answer is
    server-sent events: written to ``stream_to`` as they come when the front streams, else returned
    whole as one ``text/event-stream`` body (what API Gateway + Lambda can do: docs/answers.md).
    """
    if (too_large := _body_too_large(event)) is not None:
        return too_large
    observation = observation if observation is not None else AskObservation()
    observation.question = request.question
    observation.service = request.service
    ask_limiter().take(caller_key(event))
    p = build_platform()
    options: dict[str, Any] = {
        "search": p.search_reader,
        "engine": TimedEngine(p.inference, observation),
        "k": request.k,
        "service": request.service,
        "model": request.model,
    }
    try:
        if not request.stream:
            observation.answer = answer_question(request.question, **options)
            return _json(200, observation.answer.model_dump(mode="json"))
        events = stream_answer(request.question, **options)
        # Errors before the first event answer as they do without streaming (429, 503, 409…).
        first = next(events)
    except Exception as e:
        observation.note_error(e)
        raise
    if stream_to is None:
        return _buffered_events(first, events, observation)
    return _streamed_events(first, events, observation, stream_to, event_request_id(event, None))


def _sse_headers() -> dict[str, str]:
    return {"Cache-Control": "no-cache"}


def _note_answer(event: AnswerEvent, observation: AskObservation) -> None:
    if event.event == "answer":
        observation.answer = Answer.model_validate(event.data)


def _buffered_events(first: AnswerEvent, events: Iterator[AnswerEvent], observation: AskObservation) -> Response[Any]:
    """The whole event stream as one body. Nothing is sent yet, so an engine failing mid-way answers
    with its status (the exception propagates to the error handlers), not with an ``error`` event."""
    parts: list[str] = []
    try:
        for event in itertools.chain([first], events):
            _note_answer(event, observation)
            parts.append(event.sse())
    except Exception as e:
        observation.note_error(e)
        raise
    return Response(status_code=200, content_type=SSE, body="".join(parts), headers=_sse_headers())


def _streamed_events(
    first: AnswerEvent,
    events: Iterator[AnswerEvent],
    observation: AskObservation,
    stream: ResponseStream,
    rid: str,
) -> Response[Any]:
    """Write the events as they come. Once the head is sent, a failure can only be told in the stream:
    an ``error`` event, and the stream ends (the failure is logged under the request id)."""
    stream.start(200, [("Content-Type", SSE), *_sse_headers().items()])
    try:
        for event in itertools.chain([first], events):
            _note_answer(event, observation)
            stream.write(event.sse().encode("utf-8"))
    except ConnectionError:
        observation.disconnected = True  # closing ``events`` (below) closes the engine's stream: it stops
    except Exception as e:
        observation.note_error(e)
        observation.stream_failed = True
        logger.error(
            "the answer stream failed", exc_info=e, extra={"request_id": rid, "error": f"{type(e).__name__}: {e}"}
        )
        status = 429 if isinstance(e, EngineBusyError) else 503 if isinstance(e, _ENGINE_ERRORS) else 500
        message = "the model serving answers failed mid-answer: retry" if status != 500 else "Internal Server Error"
        with contextlib.suppress(ConnectionError):
            stream.write(AnswerEvent.failure(message, status, rid).sse().encode("utf-8"))
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    return Response(status_code=200, content_type=SSE, body="")


_ENGINE_ERRORS = (EngineUnavailableError, NoModelDeployedError)


def _record_ask(observation: AskObservation, status: int) -> None:
    try:
        p = build_platform()
    except Exception as e:  # the request has failed on it already (a 500); no sink to tell
        logger.warning("no platform to record /v1/ask metrics on", extra={"error": f"{type(e).__name__}: {e}"})
        return
    record_ask(p, observation, status)


def documents(
    status: Annotated[str | None, Query(max_length=32, description="processed, quarantined…")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> dict[str, Any]:
    """Every uploaded document and what became of it."""
    records = [DocumentRecord.model_validate(item) for _, item in build_platform().state.query(DOCS_PK)]
    if status:
        records = [r for r in records if r.status == status]
    return {"documents": [r.model_dump(mode="json") for r in records[:limit]], "total": len(records)}


def status() -> dict[str, Any]:
    """Document counts by status, and what the index holds."""
    p = build_platform()
    counts = Counter(str(item.get("status")) for _, item in p.state.query(DOCS_PK))
    return {
        "version": __version__,
        "documents": dict(counts),
        "indexed_documents": len(p.search_reader.document_versions()),
    }


def _not_utf8(_e: UnicodeDecodeError) -> Response[dict[str, Any]]:
    """A body that is not UTF-8 (Powertools fails decoding it before any route runs): the caller's fault."""
    return Response(
        status_code=400,
        content_type=content_types.APPLICATION_JSON,
        body={"message": "the request body must be UTF-8 encoded JSON"},
    )


def create_app() -> APIGatewayHttpResolver:
    """A resolver with every route and error mapping of the API (see the module's docstring for why
    there is one per execution environment or worker thread, and never a shared one)."""
    app = RequestScopedResolver(enable_validation=True)
    app.exception_handler(CLIENT_ERRORS)(_bad_request)
    app.not_found(functools.partial(_no_route, app))
    app.exception_handler([ServiceError, RequestUnsupportedContentType])(_powertools_answer)
    app.exception_handler(Exception)(functools.partial(_server_fault, app))
    app.exception_handler(RequestValidationError)(functools.partial(_invalid_request, app))
    app.exception_handler([EngineBusyError, RateLimitedError])(_too_many)
    app.exception_handler([EngineUnavailableError, NoModelDeployedError])(functools.partial(_no_engine, app))
    app.exception_handler(ModelMismatchError)(_model_mismatch)
    app.exception_handler(UnicodeDecodeError)(_not_utf8)
    app.get("/v1/search")(search)

    # ``ask`` and ``openapi`` read their resolver; Powertools derives a route's parameters (and the
    # OpenAPI document) from the function's own signature, so they are functions here, not partials.
    @app.post(ASK_PATH, summary="Answer a question from the documentation, with citations", responses=ASK_RESPONSES)
    def ask(request: Annotated[AskRequest, Body(description="the question and options")]) -> Response[Any]:
        """Answer a question from the documentation, with citations, or abstain when it does not cover it;
        ``stream: true`` sends the answer as server-sent events."""
        return answer_ask(
            app.current_event,
            request,
            observation=app.ask_observation,
            stream_to=getattr(app.lambda_context, "response_stream", None),
        )

    app.get("/v1/documents")(documents)
    app.get("/v1/status")(status)
    # The dashboard's HTML pages (docs/dashboard.md), behind the same authentication as the API.
    from docllm.api.dashboard_routes import register as register_dashboard

    register_dashboard(app)

    @app.get("/openapi.json")
    def openapi() -> Response[str]:
        return Response(
            status_code=200,
            content_type=content_types.APPLICATION_JSON,
            body=app.get_openapi_json_schema(title="docllm API", version=__version__),
        )

    return app


app = create_app()
"""The Lambda's resolver (``services/api/app.py`` ``handler``)."""
