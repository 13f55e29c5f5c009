"""Routes of the HTTP API. The handler in ``services/api/app.py`` only resolves events here.

Validation errors answer 422 (Powertools' request validation) or 400 (our own
rules such as an unknown service), each with a message that names the field;
user input never produces a 5xx.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import ValidationError

from docllm import __version__
from docllm.bootstrap import build_platform
from docllm.exceptions import PermanentError
from docllm.records import DOCS_PK, DocumentRecord
from docllm.search.api import MAX_QUERY_CHARS, SearchQuery, run_search

app = APIGatewayHttpResolver(enable_validation=True)


@app.exception_handler(PermanentError)
def _bad_request(e: PermanentError) -> Response[dict[str, str]]:
    return Response(status_code=400, content_type=content_types.APPLICATION_JSON, body={"message": str(e)})


@app.exception_handler(RequestValidationError)
def _invalid_request(e: RequestValidationError) -> Response[dict[str, Any]]:
    errors = [
        {"field": ".".join(str(x) for x in err.get("loc", ())), "message": str(err.get("msg") or err.get("type"))}
        for err in e.errors()
    ]
    return Response(
        status_code=422,
        content_type=content_types.APPLICATION_JSON,
        body={"message": "; ".join(f"{x['field']}: {x['message']}" for x in errors), "errors": errors},
    )


@app.exception_handler(ValidationError)
def _invalid(e: ValidationError) -> Response[dict[str, Any]]:
    errors = [{"field": ".".join(str(x) for x in err["loc"]), "message": err["msg"]} for err in e.errors()]
    return Response(
        status_code=400,
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
    query = SearchQuery(q=q, k=k, service=service)
    return run_search(build_platform().search, query).model_dump(mode="json")


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
    return {"version": __version__, "documents": dict(counts), "indexed_documents": len(p.search.document_versions())}


@app.get("/openapi.json")
def openapi() -> Response[str]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(title="docllm API", version=__version__),
    )
