"""``POST /v1/ask`` with ``stream: true`` over the local API front (issue 15's leftover, issue 16):
deltas leave as the model writes them, then the checked answer; time to first token is measured; a
client that goes away stops the generation; errors before the first event keep their statuses."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docllm.cli.serve_cmds import sse_events
from docllm.monitoring import names
from docllm.ports.inference import GenerationParams
from docllm.runtime.http import ApiServer
from docllm.serving.exceptions import EngineUnavailableError, NoModelDeployedError
from tests.unit.answers.fakes import FakeEngine
from tests.unit.api.fakes import GOOD, QUESTION, Failing, Platform, isolate_ask, serving


class Paced(FakeEngine):
    """Streams ``reply`` in pieces; after the first piece it waits for ``go`` (the test has seen it)."""

    def __init__(self, reply: str, *, pieces: int | None = None) -> None:
        super().__init__(reply)
        self.go = threading.Event()
        self.closed = threading.Event()
        self.sent = 0
        self.pieces = pieces

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        text = self._text(prompt, params)
        try:
            if self.pieces is not None:  # an endless-looking generation, one piece every 10 ms
                for _ in range(self.pieces):
                    self.sent += 1
                    yield " Enable"
                    time.sleep(0.01)
                return
            words = text.split(" ")
            self.sent += 1
            yield words[0]
            assert self.go.wait(10), "the test never saw the first delta"
            for word in words[1:]:
                self.sent += 1
                yield " " + word
        finally:
            self.closed.set()


class BreaksMidway(FakeEngine):
    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        self._text(prompt, params)
        yield "Open the"
        raise EngineUnavailableError("the engine's stream broke at 127.0.0.1:9")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_ask(monkeypatch)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    with contextlib.ExitStack() as stack:
        yield lambda engine: stack.enter_context(serving(monkeypatch, tmp_path, engine))


def ask(server: ApiServer, body: dict[str, Any]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.request("POST", "/v1/ask", json.dumps(body), {"Content-Type": "application/json"})
    return conn, conn.getresponse()


def events(response: http.client.HTTPResponse) -> Iterator[tuple[str, dict[str, Any]]]:
    return sse_events(iter(response.readline, b""))


def wait_for(p: Platform, name: str, timeout_s: float = 5.0) -> list[float]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if values := p.values(name, Target="local"):
            return values
        time.sleep(0.02)
    return []


def test_deltas_arrive_while_the_model_is_still_writing_then_the_answer(serve: Any) -> None:
    engine = Paced(GOOD)
    server, p = serve(engine)
    conn, response = ask(server, {"question": QUESTION, "stream": True})
    try:
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream"
        assert response.getheader("Transfer-Encoding") == "chunked" and response.getheader("apigw-requestid")
        stream = events(response)
        first = next(stream)
        # The engine is still holding its second piece back: the first one was sent on its own.
        assert first == ("delta", {"text": "Open"}) and not engine.go.is_set()
        engine.go.set()
        rest = list(stream)
    finally:
        conn.close()
    deltas = [first[1]["text"]] + [d["text"] for e, d in rest if e == "delta"]
    assert "".join(deltas) == GOOD
    assert rest[-1][0] == "answer" and rest[-1][1]["answer"] == GOOD and rest[-1][1]["citations"]
    assert len(wait_for(p, names.ASK_TIME_TO_FIRST_TOKEN)) == 2  # {Target} and the versioned set
    assert p.values(names.ASK_REQUESTS, Target="local") == [1, 1]
    assert p.values(names.ASK_SERVER_ERRORS, Target="local") == [0, 0]


def test_a_client_that_goes_away_stops_the_generation(serve: Any) -> None:
    engine = Paced(GOOD, pieces=1000)  # ten seconds of text if nobody stopped it
    server, p = serve(engine)
    conn, response = ask(server, {"question": QUESTION, "stream": True})
    assert next(events(response))[0] == "delta"
    conn.close()
    response.close()
    assert engine.closed.wait(5), "the generation went on after the client left"
    assert engine.sent < 500
    assert wait_for(p, names.ASK_REQUESTS) == [1]  # no answer, no endpoint record: {Target} only
    assert p.values(names.ASK_SERVER_ERRORS, Target="local") == [0]  # nobody's fault but the client's
    assert p.points(names.ASK_LATENCY) == []


def test_the_connection_serves_the_next_request_after_a_stream(serve: Any) -> None:
    engine = Paced(GOOD)
    engine.go.set()
    server, _ = serve(engine)
    conn, response = ask(server, {"question": QUESTION, "stream": True})
    try:
        assert list(events(response))[-1][0] == "answer"
        conn.request("POST", "/v1/ask", json.dumps({"question": QUESTION}), {"Content-Type": "application/json"})
        again = conn.getresponse()
        assert again.status == 200 and json.loads(again.read())["answer"] == GOOD
    finally:
        conn.close()


def test_an_error_before_the_first_event_keeps_its_status_and_json_body(serve: Any) -> None:
    server, p = serve(Failing(NoModelDeployedError("no endpoints/local record")))
    conn, response = ask(server, {"question": QUESTION, "stream": True})
    try:
        assert response.status == 503 and response.getheader("Content-Type") == "application/json"
        assert "no model is deployed" in json.loads(response.read())["message"]
    finally:
        conn.close()
    assert wait_for(p, names.ASK_SERVER_ERRORS) == [1]


def test_an_engine_failing_mid_stream_ends_it_with_an_error_event(serve: Any) -> None:
    server, p = serve(BreaksMidway())
    conn, response = ask(server, {"question": QUESTION, "stream": True})
    try:
        assert response.status == 200
        got = list(events(response))
    finally:
        conn.close()
    assert got[0] == ("delta", {"text": "Open the"})
    event, data = got[-1]
    assert event == "error" and data["status"] == 503 and data["request_id"]
    assert "127.0.0.1" not in data["message"]  # internals stay in the log
    assert wait_for(p, names.ASK_SERVER_ERRORS) == [1]  # no endpoint record here: {Target} only


def test_an_uncovered_question_streams_only_its_abstention(serve: Any) -> None:
    engine = Paced(GOOD)
    server, _ = serve(engine)
    conn, response = ask(server, {"question": "How do I bake sourdough bread?", "stream": True})
    try:
        got = list(events(response))
    finally:
        conn.close()
    assert [e for e, _ in got] == ["answer"] and got[0][1]["abstained"] is True and engine.sent == 0
