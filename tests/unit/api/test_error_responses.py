"""The API answers client faults with a 4xx that explains them, and server faults with a
5xx that carries only a request id; the full error is logged under that id (issue 12)."""

from __future__ import annotations

import importlib.util
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from docllm.adapters.aws.errors import translate
from docllm.api import routes
from docllm.exceptions import ConfigurationError
from docllm.runtime.http import Request, proxy_event
from docllm.search.sqlite_index import SqliteSearchIndex
from tests.conftest import REPO

ACCESS_DENIED = ClientError(
    {
        "Error": {
            "Code": "AccessDenied",
            "Message": "User: arn:aws:sts::123456789012:assumed-role/x is not authorized",
        },
        "ResponseMetadata": {"HTTPStatusCode": 403},
    },
    "Search",
)


def _load_handler() -> Any:
    spec = importlib.util.spec_from_file_location("docllm_test_api_app", REPO / "services" / "api" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


HANDLER = _load_handler()


@dataclass
class Context:
    function_name: str = "ApiFunction"
    aws_request_id: str = field(default_factory=lambda: f"lambda-{uuid.uuid4()}")
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:ApiFunction"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


class _Raising:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        raise self.error


class FakePlatform:
    def __init__(self, tmp_path: Path, *, search: Any = None, state: Any = None) -> None:
        self.search = search if search is not None else SqliteSearchIndex(tmp_path / "search")
        self.search_reader = self.search
        self.state = state


@pytest.fixture(autouse=True)
def _no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")


def call(target: str, *, request_id: str | None = "apigw-req-1", context: Context | None = None) -> tuple[int, dict]:
    event = proxy_event("GET", target.partition("?")[0], Request("GET", target, {"host": "api"}, b"", "127.0.0.1"))
    if request_id is None:
        del event["requestContext"]["requestId"]
    else:
        event["requestContext"]["requestId"] = request_id
    result = HANDLER(event, context or Context())
    return result["statusCode"], json.loads(result["body"])


def use(monkeypatch: pytest.MonkeyPatch, platform: FakePlatform) -> None:
    monkeypatch.setattr(routes, "build_platform", lambda: platform)


SERVER_FAULTS = [
    pytest.param(ConfigurationError("DOCLLM_SEARCH_ENDPOINT is not set"), "DOCLLM_SEARCH_ENDPOINT", id="configuration"),
    pytest.param(translate(ACCESS_DENIED, operation="OpenSearch Search"), "AccessDenied", id="aws-permanent"),
    pytest.param(ACCESS_DENIED, "AccessDenied", id="botocore-client-error"),
    pytest.param(RuntimeError("index file /var/task/x.db is corrupt"), "/var/task", id="unexpected"),
]


@pytest.mark.parametrize(("error", "secret"), SERVER_FAULTS)
def test_a_server_fault_is_a_500_with_a_request_id_and_no_internal_message(
    monkeypatch, tmp_path, caplog, error, secret
):
    use(monkeypatch, FakePlatform(tmp_path, search=_Raising(error)))
    with caplog.at_level(logging.ERROR):
        status, body = call("/v1/search?q=bucket")
    assert status == 500
    assert body == {"message": "Internal Server Error", "request_id": "apigw-req-1"}
    assert secret not in json.dumps(body) and type(error).__name__ not in json.dumps(body)
    (logged,) = [r for r in caplog.records if getattr(r, "request_id", None) == "apigw-req-1"]
    assert logged.exc_info is not None and logged.exc_info[1] is error
    assert secret in logged.getMessage() + str(logged.exc_info[1])


def test_without_an_api_gateway_request_id_the_lambda_request_id_is_used(monkeypatch, tmp_path):
    use(monkeypatch, FakePlatform(tmp_path, search=_Raising(RuntimeError("boom"))))
    status, body = call("/v1/search?q=bucket", request_id=None, context=Context(aws_request_id="lambda-req-9"))
    assert (status, body["request_id"]) == (500, "lambda-req-9")


def test_a_corrupt_record_is_a_server_fault_not_a_bad_request(monkeypatch, tmp_path):
    class State:
        def query(self, _pk: str) -> list[tuple[str, dict[str, Any]]]:
            return [("docs/a", {"status": 12, "nonsense": True})]

    use(monkeypatch, FakePlatform(tmp_path, state=State()))
    status, body = call("/v1/documents")
    assert status == 500 and set(body) == {"message", "request_id"}


def test_an_unknown_service_is_a_400_that_names_it(monkeypatch, tmp_path):
    use(monkeypatch, FakePlatform(tmp_path))
    status, body = call("/v1/search?q=bucket&service=nope")
    assert status == 400 and "nope" in body["message"]


def test_an_invalid_query_is_a_400_that_names_the_field(monkeypatch, tmp_path):
    use(monkeypatch, FakePlatform(tmp_path))
    status, body = call("/v1/search?q=line%0Abreak")
    assert status == 400
    assert body["message"].startswith("q: ") and body["errors"][0]["field"] == "q"


def test_an_out_of_range_parameter_is_a_400_like_every_validation_error(monkeypatch, tmp_path):
    use(monkeypatch, FakePlatform(tmp_path))
    status, body = call("/v1/search?q=bucket&k=0")
    assert status == 400 and "k" in body["message"]
