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

Powertools keeps the request being resolved (``current_event``, ``lambda_context``) where the
routes, middlewares and error handlers read it back through the resolver, so a resolver answers one
request at a time. :func:`create_app` builds one: the Lambda uses the module's :data:`app` (one per
execution environment, which Lambda invokes one event at a time); the local API front builds one per
worker thread (``services/api/app.py`` ``make_handler``). Everything here that reads the current
request is therefore given its resolver, never a module-level one.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any, cast

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
from docllm.answers.service import answer_question
from docllm.bootstrap import build_platform
from docllm.exceptions import InvalidRequestError
from docllm.lambda_support import logger
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

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        if isinstance(event, BaseProxyEvent):  # Powertools accepts a wrapped event too
            event = event.raw_event
        self.current_event = cast(APIGatewayProxyEventV2, self._to_proxy_event(dict(event)))
        self.lambda_context = context
        try:
            return self._build_response(self._resolve())
        finally:
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
    context = app.current_event.raw_event.get("requestContext") or {}
    return str(context.get("requestId") or getattr(app.lambda_context, "aws_request_id", None) or "unknown")


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
    if event.path != "/v1/ask":
        return None
    raw = event.body or ""
    size = len(raw) * 3 // 4 if event.is_base64_encoded else len(raw.encode("utf-8"))
    if size <= MAX_ASK_BODY:
        return None
    return _json(413, {"message": f"request body too large: at most {MAX_ASK_BODY} bytes"})


ASK_RESPONSES: dict[int, OpenAPIResponse] = {
    200: {
        "description": "an answer with citations, or an abstention (abstained: true, reason)",
        "content": {"application/json": {"model": Answer}},
    },
    400: {"description": "invalid body, unknown service, streaming asked for, prompt too long"},
    409: {"description": "model names a version other than the deployed one"},
    413: {"description": f"body over {MAX_ASK_BODY} bytes"},
    429: {"description": "rate limit or engine queue full; see Retry-After"},
    503: {"description": "no model deployed, or the engine is unreachable; see Retry-After"},
}


def answer_ask(event: APIGatewayProxyEventV2, request: AskRequest) -> Response[dict[str, Any]]:
    """``POST /v1/ask`` for the request ``event`` carries (its size and its caller) and its parsed body."""
    if (too_large := _body_too_large(event)) is not None:
        return too_large
    if request.stream:
        # The API front answers whole responses only (API Gateway → Lambda buffers; so does the local
        # front): streaming needs a response-streaming front first (docs/answers.md).
        raise InvalidRequestError("stream: streaming is not supported by this API yet; send stream: false")
    ask_limiter().take(caller_key(event))
    p = build_platform()
    answer: Answer = answer_question(
        request.question,
        search=p.search_reader,
        engine=p.inference,
        k=request.k,
        service=request.service,
        model=request.model,
    )
    return _json(200, answer.model_dump(mode="json"))


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
    @app.post("/v1/ask", summary="Answer a question from the documentation, with citations", responses=ASK_RESPONSES)
    def ask(request: Annotated[AskRequest, Body(description="the question and options")]) -> Response[dict[str, Any]]:
        """Answer a question from the documentation, with citations, or abstain when it does not cover it."""
        return answer_ask(app.current_event, request)

    app.get("/v1/documents")(documents)
    app.get("/v1/status")(status)

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
