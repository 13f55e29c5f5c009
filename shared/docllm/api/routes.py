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
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import ValidationError

from docllm import __version__
from docllm.bootstrap import build_platform
from docllm.exceptions import InvalidRequestError
from docllm.lambda_support import logger
from docllm.records import DOCS_PK, DocumentRecord
from docllm.search.api import MAX_QUERY_CHARS, SearchQuery, run_search
from docllm.search.exceptions import UnknownServiceError

app = APIGatewayHttpResolver(enable_validation=True)


class InvalidParametersError(InvalidRequestError):
    """Parameters that pass the OpenAPI checks but not the query model's own rules."""

    def __init__(self, e: ValidationError) -> None:
        self.errors = [{"field": ".".join(str(x) for x in err["loc"]), "message": err["msg"]} for err in e.errors()]
        super().__init__("; ".join(f"{x['field']}: {x['message']}" for x in self.errors))


#: Errors that are the caller's fault; their messages are written to be shown.
CLIENT_ERRORS: list[type[Exception]] = [InvalidRequestError, UnknownServiceError]


@app.exception_handler(CLIENT_ERRORS)
def _bad_request(e: Exception) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"message": str(e)}
    if isinstance(e, InvalidParametersError):
        body["errors"] = e.errors
    return Response(status_code=400, content_type=content_types.APPLICATION_JSON, body=body)


@app.not_found
def _no_route(_e: NotFoundError) -> Response[dict[str, str]]:
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


@app.exception_handler([ServiceError, RequestUnsupportedContentType])
def _powertools_answer(e: Exception) -> Response[Any]:
    raise e  # Powertools' own status and message (404, 415…), not a server fault


def request_id() -> str:
    """API Gateway's request id (what the caller sees as ``apigw-requestid``), else Lambda's."""
    context = app.current_event.raw_event.get("requestContext") or {}
    return str(context.get("requestId") or getattr(app.lambda_context, "aws_request_id", None) or "unknown")


@app.exception_handler(Exception)
def _server_fault(e: Exception) -> Response[dict[str, str]]:
    rid = request_id()
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


@app.exception_handler(RequestValidationError)
def _invalid_request(e: RequestValidationError) -> Response[dict[str, Any]]:
    errors = [
        {"field": ".".join(str(x) for x in err.get("loc", ())), "message": str(err.get("msg") or err.get("type"))}
        for err in e.errors()
    ]
    return Response(
        status_code=400,  # one status for every query that fails validation, ours or Powertools' (see above)
        content_type=content_types.APPLICATION_JSON,
        body={"message": "; ".join(f"{x['field']}: {x['message']}" for x in errors), "errors": errors},
    )


@app.get("/v1/search")
def search(
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="query text")],
    k: Annotated[int, Query(ge=1, le=100, description="number of hits")] = 10,
    service: Annotated[str | None, Query(max_length=128, description="only this service")] = None,
) -> dict[str, Any]:
    """BM25 search over the indexed chunks; each hit names its document and section."""
    try:
        query = SearchQuery(q=q, k=k, service=service)
    except ValidationError as e:  # the caller's input; any other ValidationError is ours (a 500)
        raise InvalidParametersError(e) from e
    # The reader never writes to the index: the API role only has read permissions on it.
    return run_search(build_platform().search_reader, query).model_dump(mode="json")


@app.get("/v1/documents")
def documents(
    status: Annotated[str | None, Query(max_length=32, description="processed, quarantined…")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> dict[str, Any]:
    """Every uploaded document and what became of it."""
    records = [DocumentRecord.model_validate(item) for _, item in build_platform().state.query(DOCS_PK)]
    if status:
        records = [r for r in records if r.status == status]
    return {"documents": [r.model_dump(mode="json") for r in records[:limit]], "total": len(records)}


@app.get("/v1/status")
def status() -> dict[str, Any]:
    """Document counts by status, and what the index holds."""
    p = build_platform()
    counts = Counter(str(item.get("status")) for _, item in p.state.query(DOCS_PK))
    return {
        "version": __version__,
        "documents": dict(counts),
        "indexed_documents": len(p.search_reader.document_versions()),
    }


@app.get("/openapi.json")
def openapi() -> Response[str]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(title="docllm API", version=__version__),
    )
