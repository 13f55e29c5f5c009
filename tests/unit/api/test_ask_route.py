"""``POST /v1/ask``: validated input, answers and abstentions as 200, engine trouble as 429/503,
a wrong model as 409, oversized bodies as 413, a per-caller rate limit (issue 15); ``stream: true``
behind Lambda is the event stream in one body (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from docllm.api import routes
from docllm.runtime.http import Request, proxy_event
from docllm.serving.exceptions import EngineBusyError, EngineUnavailableError, NoModelDeployedError
from tests.unit.answers.fakes import FakeEngine
from tests.unit.api.fakes import GOOD, QUESTION, Failing, Platform, ask_lambda, isolate_ask
from tests.unit.api.test_error_responses import HANDLER, Context


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_ask(monkeypatch)


def use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, engine: Any = None) -> FakeEngine:
    engine = engine if engine is not None else FakeEngine(GOOD)
    monkeypatch.setattr(routes, "build_platform", lambda: Platform(tmp_path, engine))
    return engine


def post(body: Any, *, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    result = ask_lambda(body, headers=headers)
    return result["statusCode"], result.get("headers") or {}, json.loads(result["body"])


def test_a_question_is_answered_with_citations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(monkeypatch, tmp_path)
    status, _, body = post({"question": QUESTION})
    assert status == 200
    assert body["answer"] == GOOD and body["abstained"] is False and body["grounded"] is True
    citation = body["citations"][0]
    assert citation["doc_key"] == "s3/Versioning.md"
    assert set(citation) >= {"doc_key", "version_id", "chunk_id", "title", "heading_path", "score", "quote"}
    assert body["model_version"] == "tiny-s3-v1" and body["latency_ms"] >= 0


def test_an_uncovered_question_is_a_200_abstention(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine = use(monkeypatch, tmp_path)
    status, _, body = post({"question": "How do I bake sourdough bread?", "k": 3})
    assert status == 200 and body["abstained"] is True and body["reason"] == "no_relevant_documents"
    assert body["answer"] == "The documentation does not cover this." and engine.prompts == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"question": ""},
        {"question": "   "},
        {"question": "x" * 2001},
        {"question": "line\nbreak"},
        {"question": QUESTION, "k": 0},
        {"question": QUESTION, "k": 21},
        {"question": QUESTION, "extra": 1},
        {"question": QUESTION, "stream": "maybe"},
    ],
)
def test_invalid_bodies_are_400_with_field_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: Any) -> None:
    use(monkeypatch, tmp_path)
    status, _, out = post(body)
    assert status == 400 and out["message"]


def test_a_body_that_is_not_json_is_400(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(monkeypatch, tmp_path)
    status, _, _ = post(b"{not json")
    assert status == 400


def test_a_body_that_is_not_utf8_is_400_not_a_server_fault(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(monkeypatch, tmp_path)
    status, _, body = post(b"\xc8\x00{}")  # found by schemathesis' negative mode
    assert status == 400
    assert body == {"message": "the request body must be UTF-8 encoded JSON"}


def test_an_unknown_service_is_400(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(monkeypatch, tmp_path)
    status, _, body = post({"question": QUESTION, "service": "nope"})
    assert status == 400 and "nope" in body["message"]


def test_a_streamed_answer_behind_lambda_is_the_whole_event_stream_in_one_body(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use(monkeypatch, tmp_path)
    result = ask_lambda({"question": QUESTION, "stream": True})  # a Lambda context: no response stream
    assert result["statusCode"] == 200
    assert result["headers"]["Content-Type"] == "text/event-stream"
    events = sse_events(result["body"].encode().splitlines(keepends=True))
    deltas = [data["text"] for event, data in events if event == "delta"]
    final = [data for event, data in events if event == "answer"]
    assert "".join(deltas) == GOOD and len(final) == 1 and events[-1][0] == "answer"
    assert final[0]["answer"] == GOOD and final[0]["citations"][0]["doc_key"] == "s3/Versioning.md"


def test_an_engine_failing_a_buffered_stream_answers_its_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    class Breaks(FakeEngine):
        def stream(self, prompt, params):  # type: ignore[no-untyped-def]
            yield "Open the"
            raise EngineUnavailableError("the engine's stream broke")

    use(monkeypatch, tmp_path, Breaks(GOOD))
    status, headers, body = post({"question": QUESTION, "stream": True})
    assert status == 503 and "not available" in body["message"] and "Retry-After" in headers


def sse_events(lines: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    from docllm.cli.serve_cmds import sse_events as parse

    return list(parse(lines))


@pytest.mark.parametrize("body", [{"question": QUESTION, "pad": " " * 20_000}, {"question": "\\ud83d\\ude00" * 2000}])
def test_a_body_over_16_kib_is_413(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: Any) -> None:
    use(monkeypatch, tmp_path)
    raw = json.dumps(body).encode().replace(b"\\\\", b"\\")  # keep the escapes as escapes: 12 bytes a character
    status, _, out = post(raw)
    assert status == 413 and "16384" in out["message"]


def test_a_model_other_than_the_deployed_one_is_409(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(monkeypatch, tmp_path)
    status, _, body = post({"question": QUESTION, "model": "tiny-s3-v0"})
    assert status == 409 and body["deployed_model"] == "tiny-s3-v1"
    assert post({"question": QUESTION, "model": "tiny-s3-v1"})[0] == 200


def test_a_busy_engine_is_429_with_retry_after(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use(monkeypatch, tmp_path, Failing(EngineBusyError("queue full (64)")))
    status, headers, body = post({"question": QUESTION})
    assert status == 429 and int(headers["Retry-After"]) >= 1 and body["message"]


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (EngineUnavailableError("connect to http://127.0.0.1:8123 refused"), "not available"),
        (NoModelDeployedError("no endpoints/local record"), "no model is deployed"),
    ],
)
def test_no_engine_is_a_503_that_hides_internals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception, words: str
) -> None:
    use(monkeypatch, tmp_path, Failing(error))
    status, headers, body = post({"question": QUESTION})
    assert status == 503 and words in body["message"] and "Retry-After" in headers
    assert "127.0.0.1" not in json.dumps(body) and "endpoints" not in json.dumps(body)


def test_callers_over_their_rate_get_429(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCLLM_ASK_RATE", "0.001")
    monkeypatch.setenv("DOCLLM_ASK_BURST", "2")
    use(monkeypatch, tmp_path)
    alice = {"x-api-key": "alice"}
    assert post({"question": QUESTION}, headers=alice)[0] == 200
    assert post({"question": QUESTION}, headers=alice)[0] == 200
    status, headers, body = post({"question": QUESTION}, headers=alice)
    assert status == 429 and int(headers["Retry-After"]) >= 1 and "retry" in body["message"]
    assert post({"question": QUESTION}, headers={"authorization": "Bearer bob"})[0] == 200


def test_the_openapi_document_describes_ask(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    event = proxy_event("GET", "/openapi.json", Request("GET", "/openapi.json", {"host": "api"}, b"", "127.0.0.1"))
    doc = json.loads(HANDLER(event, Context())["body"])
    operation = doc["paths"]["/v1/ask"]["post"]
    assert "requestBody" in operation
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Answer")
    schemas = doc["components"]["schemas"]
    assert {"question", "k", "service", "model", "stream"} <= set(schemas["AskRequest"]["properties"])
    assert "group_by" in {p["name"] for p in doc["paths"]["/v1/search"]["get"]["parameters"]}
