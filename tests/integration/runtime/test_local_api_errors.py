"""The local API front answers as API Gateway does when the integration fails: a bare 500
with the request id, never the exception (issue 12); the real routes' answers pass through."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

from docllm.runtime.http import Request, respond, start_api_server
from docllm.runtime.template import FunctionSpec, HttpRoute

FN = FunctionSpec("Api", "x/", "app.handler", 30, {}, http_routes=(HttpRoute("GET", "/v1/search"),))


@dataclass
class _Runtime:
    host: str = "127.0.0.1"
    port: int = 0
    auth: bool = False


def _get(handler: Any) -> Any:
    return respond(FN, handler, None, Request("GET", "/v1/search?q=x", {"host": "x"}, b"", "127.0.0.1"))


def test_a_crashed_integration_is_a_500_with_the_request_id_and_no_detail(caplog):
    seen: dict[str, Any] = {}

    def handler(event: dict[str, Any], context: Any) -> Any:
        seen["request_id"] = event["requestContext"]["requestId"]
        raise RuntimeError("secret path /home/me/.docllm/state.db")

    with caplog.at_level(logging.ERROR, logger="docllm.runtime.http"):
        reply = _get(handler)
    body = json.loads(reply.body)
    assert reply.status == 500
    assert body == {"message": "Internal Server Error", "request_id": seen["request_id"]}
    assert dict(reply.headers)["apigw-requestid"] == seen["request_id"]
    (logged,) = caplog.records
    assert seen["request_id"] in logged.getMessage() and "secret path" in logged.getMessage()


@pytest.mark.parametrize("result", [None, "not a proxy result", {"statusCode": "abc"}])
def test_a_malformed_proxy_result_is_a_500_not_a_dropped_connection(result):
    reply = _get(lambda event, context: result)
    assert reply.status == 500 and json.loads(reply.body)["message"] == "Internal Server Error"


def test_every_answer_carries_the_request_id_header():
    reply = _get(lambda event, context: {"statusCode": 200, "body": "{}"})
    assert reply.status == 200 and dict(reply.headers)["apigw-requestid"]


def test_a_500_over_http_keeps_the_connection_usable():
    def handler(event: dict[str, Any], context: Any) -> Any:
        raise ValueError("nope")

    server = start_api_server(_Runtime(), FN, handler)  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/search?q=x"
    try:
        for _ in range(2):
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(url, timeout=5)
            assert info.value.code == 500
            body = json.loads(info.value.read())
            assert set(body) == {"message", "request_id"} and "nope" not in json.dumps(body)
    finally:
        server.shutdown()
