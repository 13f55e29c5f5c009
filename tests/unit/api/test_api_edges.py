"""The API function answers its edges the way the local front and API Gateway do (issue 13):
an unknown path (a trailing slash included) is ``404 {"message": "Not Found"}``, a known path
with another method ``405`` with ``Allow``, and a query failing validation ``400``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from docllm.runtime.http import Request, proxy_event
from tests.unit.api.test_error_responses import HANDLER, Context, FakePlatform, use


@pytest.fixture(autouse=True)
def _no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")


def call(method: str, target: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    path = target.partition("?")[0]
    event = proxy_event(method, path, Request(method, target, {"host": "api"}, b"", "127.0.0.1"))
    result = HANDLER(event, Context())
    return result["statusCode"], result.get("headers") or {}, json.loads(result["body"])


@pytest.mark.parametrize("path", ["/v1/status/", "/v1/search/", "/v1/nope", "/"])
def test_an_unknown_path_is_the_api_gateway_404(path: str) -> None:
    status, _, body = call("GET", path)
    assert (status, body) == (404, {"message": "Not Found"})


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/status"), ("DELETE", "/v1/search"), ("PATCH", "/openapi.json")]
)
def test_a_known_path_with_another_method_is_a_405_with_allow(method: str, path: str) -> None:
    status, headers, body = call(method, path)
    assert (status, body) == (405, {"message": "Method Not Allowed"})
    assert headers["Allow"] == "GET"


@pytest.mark.parametrize("query", ["q=bucket&k=0", "q=bucket&k=x", "k=2", "q=line%0Abreak", "q=a&service=nope"])
def test_client_faults_in_the_query_are_all_400(monkeypatch: pytest.MonkeyPatch, tmp_path, query: str) -> None:
    use(monkeypatch, FakePlatform(tmp_path))
    status, _, body = call("GET", f"/v1/search?{query}")
    assert status == 400 and body["message"]
