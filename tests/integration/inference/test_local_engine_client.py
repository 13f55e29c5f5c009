"""LocalEngineClient against a fake OpenAI-compatible engine (http.server in a thread): the request it
sends, the answers it reads (JSON and server-sent events), each error mapping, and the one retry
that carries a request across a version swap."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from docllm.adapters.local.inference import ENDPOINTS_PK, LOCAL_SK, LocalEngineClient
from docllm.adapters.local.state import SqliteStateStore
from docllm.ports.inference import GenerationParams
from docllm.ports.state import Item
from docllm.serving.exceptions import (
    EngineBusyError,
    EngineUnavailableError,
    NoModelDeployedError,
    PromptTooLongError,
)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout test) breaks the pipe; that is the point


class FakeEngine:
    """A few OpenAI routes with canned answers; every request is recorded."""

    def __init__(self, model: str = "v1", *, context: dict[str, int] | None = None) -> None:
        self.model = model
        self.context = {"context_length": 256} if context is None else context
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.status = 200  # answer every request with this status when not 200
        self.deltas = ["Versioning", " keeps", " every", " version"]
        self.delay_s = 0.0
        self.stream_error: dict[str, Any] | None = None
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                engine.requests.append(("GET", self.path, None))
                if engine._error(self):
                    return
                entry = {"id": engine.model, "object": "model", "owned_by": "docllm", **engine.context}
                self._json(200, {"object": "list", "data": [entry]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                engine.requests.append(("POST", self.path, body))
                time.sleep(engine.delay_s)
                if engine._error(self):
                    return
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.write(b": keep-alive comment\n\n")
                    for text in engine.deltas:
                        chunk = {
                            "object": "text_completion",
                            "model": engine.model,
                            "choices": [{"index": 0, "text": text, "finish_reason": None}],
                        }
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    if engine.stream_error:
                        self.wfile.write(f"data: {json.dumps({'error': engine.stream_error})}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    # Anything after [DONE] is not part of the answer.
                    self.wfile.write(b'data: {"choices": [{"text": "AFTER"}]}\n\n')
                    return
                self._json(
                    200,
                    {
                        "id": "cmpl-1",
                        "object": "text_completion",
                        "model": engine.model,
                        "choices": [{"index": 0, "text": "".join(engine.deltas), "finish_reason": "length"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
                    },
                )

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._handler = Handler
        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def _error(self, handler: Any) -> bool:
        if self.status == 200:
            return False
        handler._json(
            self.status, {"error": {"message": f"status {self.status}", "type": "error", "code": self.status}}
        )
        return True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.close()


@pytest.fixture
def state(tmp_path: Path) -> SqliteStateStore:
    return SqliteStateStore(tmp_path / "state.sqlite3")


def record(state: SqliteStateStore, url: str, version: str = "v1") -> None:
    state.put(ENDPOINTS_PK, LOCAL_SK, {"url": url, "model_version": version, "deployed_at": "2026-01-01T00:00:00Z"})


def dead_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class SwapOnSecondRead(SqliteStateStore):
    """The deployer's swap, landing between the client's first read of the record and its retry."""

    def __init__(self, path: Path, after_first: Item) -> None:
        super().__init__(path)
        self._after_first: Item | None = after_first
        self.reads = 0

    def get(self, pk: str, sk: str) -> Item | None:
        item = super().get(pk, sk)
        self.reads += 1
        if self._after_first is not None:
            self.put(pk, sk, self._after_first)
            self._after_first = None
        return item


def test_generate_sends_the_openai_completion_for_the_recorded_version(
    engine: FakeEngine, state: SqliteStateStore
) -> None:
    record(state, engine.url)
    params = GenerationParams(max_tokens=4, stop=["\n\n"], seed=7, top_k=5)
    out = LocalEngineClient(state).generate("S3 versioning", params)
    assert (out.text, out.finish_reason, out.prompt_tokens, out.completion_tokens, out.model) == (
        "Versioning keeps every version",
        "length",
        5,
        4,
        "v1",
    )
    [(method, path, body)] = engine.requests
    assert (method, path) == ("POST", "/v1/completions")
    assert body == {
        "prompt": "S3 versioning",
        "max_tokens": 4,
        "temperature": 0.0,
        "top_p": 1.0,
        "model": "v1",
        "stop": ["\n\n"],
        "seed": 7,
        "top_k": 5,
    }


def test_info_reads_the_context_length_from_the_models_route(engine: FakeEngine, state: SqliteStateStore) -> None:
    record(state, engine.url)
    info = LocalEngineClient(state).info()
    assert (info.model, info.context_length) == ("v1", 256)
    assert engine.requests == [("GET", "/v1/models", None)]


def test_info_accepts_vllms_max_model_len(state: SqliteStateStore) -> None:
    vllm = FakeEngine(context={"max_model_len": 2048})
    try:
        record(state, vllm.url)
        assert LocalEngineClient(state).info().context_length == 2048
    finally:
        vllm.close()


def test_stream_yields_the_deltas_until_done(engine: FakeEngine, state: SqliteStateStore) -> None:
    record(state, engine.url)
    deltas = list(LocalEngineClient(state).stream("S3 versioning", GenerationParams(max_tokens=4)))
    assert deltas == ["Versioning", " keeps", " every", " version"]
    assert engine.requests[0][2] is not None and engine.requests[0][2]["stream"] is True


def test_an_error_event_inside_the_stream_is_a_typed_error(engine: FakeEngine, state: SqliteStateStore) -> None:
    record(state, engine.url)
    engine.stream_error = {"message": "prompt too long", "type": "BadRequestError", "code": 400}
    stream = LocalEngineClient(state).stream("x", GenerationParams())
    with pytest.raises(PromptTooLongError):
        list(stream)


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, EngineBusyError), (400, PromptTooLongError), (404, NoModelDeployedError), (503, EngineUnavailableError)],
)
def test_engine_statuses_map_to_typed_errors(
    engine: FakeEngine, state: SqliteStateStore, status: int, error: type[Exception]
) -> None:
    record(state, engine.url)
    engine.status = status
    client = LocalEngineClient(state)
    with pytest.raises(error):
        client.generate("x", GenerationParams())
    with pytest.raises(error):
        client.stream("x", GenerationParams())
    # Only a refused connection, or a 503 from an engine no longer recorded, is sent twice.
    assert len(engine.requests) == 2


def test_no_recorded_engine_is_no_model_deployed(state: SqliteStateStore) -> None:
    with pytest.raises(NoModelDeployedError):
        LocalEngineClient(state).generate("x", GenerationParams())


def test_a_refused_connection_is_retried_once_on_the_engine_recorded_since(engine: FakeEngine, tmp_path: Path) -> None:
    # The request read the old engine's record; the old engine stopped accepting; the swap recorded the new one.
    new = {"url": engine.url, "model_version": "v1", "deployed_at": "2026-01-02T00:00:00Z"}
    state = SwapOnSecondRead(tmp_path / "state.sqlite3", after_first=new)
    record(state, dead_url(), version="v0")
    state.reads = 0
    out = LocalEngineClient(state).generate("x", GenerationParams())
    assert out.model == "v1"
    assert state.reads == 2
    assert len(engine.requests) == 1


def test_a_draining_engine_503_is_retried_on_the_new_engine(engine: FakeEngine, tmp_path: Path) -> None:
    old = FakeEngine(model="v0")
    old.status = 503
    try:
        state = SwapOnSecondRead(tmp_path / "state.sqlite3", after_first={"url": engine.url, "model_version": "v1"})
        record(state, old.url, version="v0")
        deltas = list(LocalEngineClient(state).stream("x", GenerationParams()))
        assert deltas == engine.deltas
        assert len(old.requests) == 1 and len(engine.requests) == 1
    finally:
        old.close()


def test_an_engine_that_stays_unreachable_fails_after_one_retry(state: SqliteStateStore) -> None:
    record(state, dead_url())
    with pytest.raises(EngineUnavailableError, match="cannot be reached"):
        LocalEngineClient(state).info()


def test_a_timeout_is_unavailable_and_not_retried(engine: FakeEngine, state: SqliteStateStore) -> None:
    record(state, engine.url)
    engine.delay_s = 0.5
    with pytest.raises(EngineUnavailableError, match="did not answer"):
        LocalEngineClient(state, timeout_s=0.1).generate("x", GenerationParams())
    assert len(engine.requests) == 1
