"""The engine server as a subprocess, driven by the official ``openai`` client and raw HTTP.

The export is a tiny random-weight Llama with a SentencePiece tokenizer trained in the test
(``tests/unit/serving/conftest.py``); a 512-token context lets a stream run long enough to be
interrupted, queued behind, or drained.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.unit.serving.conftest import build_export

MODEL = "tiny-v1"


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=60)

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(*self.address, timeout=60)

    def metric(self, line_prefix: str) -> float:
        c = self.conn()
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        values = [float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(line_prefix)]
        return sum(values)


def start_server(export: Path, tmp: Path, *extra: str) -> Server:
    stderr = (tmp / f"server-{time.monotonic_ns()}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "docllm.serving.server", "--export", str(export), "--model-name", MODEL,
         "--port", "0", "--threads", "1", *extra],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until READY (or the process dies: empty line)
    assert line.startswith("READY "), f"server did not start: {line!r}; see {stderr.name}"
    return Server(line.split()[1], proc)


def stop_server(server: Server) -> int:
    server.proc.send_signal(signal.SIGTERM)
    return server.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_export(tmp_path_factory.mktemp("export"), block_size=512)


@pytest.fixture(scope="module")
def server(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(export, tmp_path_factory.mktemp("logs"), "--max-batch", "4", "--max-queue", "1")
    yield s
    assert stop_server(s) == 0


def wait_until_idle(server: Server) -> None:
    """Requests of an earlier test (cancelled, closed) have left the engine."""
    deadline = time.monotonic() + 30
    while server.metric("docllm_engine_batch_size") or server.metric("docllm_engine_queue_depth"):
        assert time.monotonic() < deadline, "the engine did not become idle"
        time.sleep(0.02)


def post_stream(
    server: Server, path: str, body: dict[str, object]
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    c = server.conn()
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return c, c.getresponse()


def read_events(resp: http.client.HTTPResponse) -> Iterator[str]:
    while line := resp.readline():
        if line.startswith(b"data: "):
            yield line[6:].decode().strip()


# --- the OpenAI surface, through the official client -----------------------------------------


def test_models_health_and_completions_through_the_openai_client(server: Server) -> None:
    client = server.client()
    assert [m.id for m in client.models.list()] == [MODEL]
    done = client.completions.create(model=MODEL, prompt="Amazon S3 stores", max_tokens=8, temperature=0)
    assert done.choices[0].finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 8
    again = client.completions.create(model=MODEL, prompt="Amazon S3 stores", max_tokens=8, temperature=0)
    assert again.choices[0].text == done.choices[0].text


def test_streamed_completion_equals_the_non_streamed_one(server: Server) -> None:
    client = server.client()
    full = client.completions.create(model=MODEL, prompt="A bucket is", max_tokens=20, temperature=0)
    chunks = list(
        client.completions.create(
            model=MODEL, prompt="A bucket is", max_tokens=20, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20


def test_chat_completion_plain_and_streamed(server: Server) -> None:
    client = server.client()
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is S3?"},
    ]
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0)
    assert reply.choices[0].message.role == "assistant"
    streamed = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=12,
        temperature=0,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == reply.choices[0].message.content


def test_greedy_completions_are_the_same_batched_as_alone(server: Server) -> None:
    client = server.client()
    prompts = ["Amazon S3 stores", "Versioning keeps", "Lifecycle rules", "Café"]
    alone = [client.completions.create(model=MODEL, prompt=p, max_tokens=15 + 5 * i, temperature=0).choices[0].text
             for i, p in enumerate(prompts)]  # fmt: skip
    batched: list[str] = [""] * len(prompts)

    def ask(i: int) -> None:
        r = server.client().completions.create(model=MODEL, prompt=prompts[i], max_tokens=15 + 5 * i, temperature=0)
        batched[i] = r.choices[0].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert batched == alone


def test_bad_input_is_a_400_and_an_unknown_model_a_404(server: Server) -> None:
    client = server.client()
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.completions.create(model=MODEL, prompt="x", logprobs=2)
    with pytest.raises(openai.BadRequestError, match="context") as too_long:
        client.completions.create(model=MODEL, prompt="x", max_tokens=4000)
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="x", temperature=-1)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="another-version", prompt="x")
    c = server.conn()
    c.request("POST", "/v1/completions", body="{not json", headers={"Content-Type": "application/json"})
    resp = c.getresponse()
    assert resp.status == 400 and "error" in json.loads(resp.read())


def test_health_and_metrics(server: Server) -> None:
    c = server.conn()
    c.request("GET", "/health")
    assert json.loads(c.getresponse().read()) == {"status": "ok", "model": MODEL}
    assert server.metric('docllm_http_requests_total{route="/health",status="200"}') >= 1
    assert server.metric("docllm_engine_queue_depth") == 0


# --- back-pressure, disconnects, drain --------------------------------------------------------


def test_a_full_queue_answers_429_with_retry_after_at_once(server: Server) -> None:
    # max-batch 4, max-queue 1: four long streams run, a fifth waits, a sixth is refused.
    body = {"model": MODEL, "prompt": "Amazon", "max_tokens": 480, "temperature": 0, "stream": True}
    streams = [post_stream(server, "/v1/completions", body) for _ in range(4)]
    for _, resp in streams:
        assert resp.status == 200
        next(read_events(resp))
    waiting = threading.Thread(target=lambda: post_stream(server, "/v1/completions", {**body, "max_tokens": 1}))
    waiting.start()
    deadline = time.monotonic() + 10
    while server.metric("docllm_engine_queue_depth") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    c = server.conn()
    t0 = time.monotonic()
    c.request("POST", "/v1/completions", body=json.dumps({**body, "stream": False, "max_tokens": 1}),
              headers={"Content-Type": "application/json"})  # fmt: skip
    resp = c.getresponse()
    assert time.monotonic() - t0 < 2
    assert resp.status == 429
    assert resp.getheader("Retry-After") == "1"
    assert json.loads(resp.read())["error"]["type"] == "rate_limit_error"
    for conn, _ in streams:
        conn.close()  # their requests are cancelled: the queued one runs
    waiting.join(30)
    wait_until_idle(server)


def test_a_client_that_disconnects_mid_stream_cancels_its_request(server: Server) -> None:
    wait_until_idle(server)
    before = server.metric('docllm_engine_requests_total{outcome="cancelled"}')
    conn, resp = post_stream(
        server, "/v1/completions", {"model": MODEL, "prompt": "Amazon", "max_tokens": 480, "stream": True}
    )
    events = read_events(resp)
    next(events)
    next(events)
    conn.sock.close() if conn.sock else None
    conn.close()
    deadline = time.monotonic() + 20
    while server.metric('docllm_engine_requests_total{outcome="cancelled"}') <= before:
        assert time.monotonic() < deadline, "the request was not cancelled"
        time.sleep(0.02)
    wait_until_idle(server)


def test_sigterm_drains_a_stream_in_flight_and_refuses_new_connections(export: Path, tmp_path: Path) -> None:
    s = start_server(export, tmp_path)
    _conn, resp = post_stream(
        s, "/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400, "temperature": 0,
         "stream": True, "stop": ["never-generated"]},
    )  # fmt: skip
    events = read_events(resp)
    next(events)
    s.proc.send_signal(signal.SIGTERM)
    rest = list(events)
    assert rest[-1] == "[DONE]"
    finish = json.loads(rest[-2])["choices"][0]["finish_reason"]
    assert finish in ("length", "stop")
    with pytest.raises(OSError):
        refused = s.conn()
        refused.request("GET", "/health")
        refused.getresponse()
    assert s.proc.wait(timeout=30) == 0


def test_a_dead_engine_process_ends_its_streams_and_the_server_exits_to_be_restarted(
    export: Path, tmp_path: Path
) -> None:
    s = start_server(export, tmp_path)
    _conn, resp = post_stream(
        s, "/v1/completions",
        {"model": MODEL, "prompt": "Amazon", "max_tokens": 400, "temperature": 0, "stream": True,
         "stop": ["never-generated"]},
    )  # fmt: skip
    events = read_events(resp)
    next(events)
    children = Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children").read_text().split()
    # The engine process, not multiprocessing's resource tracker beside it.
    engine = [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(engine) == 1, children
    os.kill(int(engine[0]), signal.SIGKILL)  # an out-of-memory kill, say
    t0 = time.monotonic()
    rest = list(events)  # ends (with an error event), never hangs
    assert time.monotonic() - t0 < 15
    assert any("error" in json.loads(e) for e in rest if e != "[DONE]")
    # A non-zero exit is what the local deploy target's watchdog restarts.
    assert s.proc.wait(timeout=30) == 1


def test_while_the_model_loads_health_and_generation_answer_503() -> None:
    from docllm.serving.server import EngineHTTPServer, ServerState

    httpd = EngineHTTPServer(("127.0.0.1", 0), ServerState(MODEL))  # no engine yet: loading
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        c = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=10)
        c.request("GET", "/health")
        resp = c.getresponse()
        assert (resp.status, json.loads(resp.read())["status"]) == (503, "loading")
        c.request("POST", "/v1/completions", body=json.dumps({"model": MODEL, "prompt": "x"}))
        resp = c.getresponse()
        assert resp.status == 503 and resp.getheader("Retry-After") and json.loads(resp.read())["error"]
    finally:
        httpd.shutdown()
        httpd.server_close()
