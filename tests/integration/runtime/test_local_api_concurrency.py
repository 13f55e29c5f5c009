"""The local API front answers requests in parallel on its worker threads, each with a handler of
its own (issue 15): slow requests overlap instead of queueing, a request is never answered with
another's data, a full backlog is a 503 with ``Retry-After``, and a handler that cannot say how to
make one per worker still runs one invocation at a time, as one Lambda execution environment does."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from docllm.api.routes import create_app
from docllm.runtime.http import ApiServer, handler_factory, start_api_server
from docllm.runtime.template import FunctionSpec, HttpRoute
from tests.conftest import REPO

SEARCH = FunctionSpec("Api", "x/", "app.handler", 30, {}, http_routes=(HttpRoute("GET", "/v1/search"),))


@dataclass
class _Runtime:
    host: str = "127.0.0.1"
    port: int = 0
    auth: bool = False


def _api_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docllm_test_api_app_workers", REPO / "services/api/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _get(url: str, timeout: float = 10) -> tuple[int, dict[str, str], dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def _url(server: ApiServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_a_handler_without_make_handler_runs_one_invocation_at_a_time_while_requests_overlap():
    active = 0
    peak = 0
    lock = threading.Lock()

    def handler(event, context):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return {"statusCode": 200, "body": json.dumps({"q": event["queryStringParameters"]["q"]})}

    server = start_api_server(_Runtime(), SEARCH, handler)  # type: ignore[arg-type]
    url = _url(server, "/v1/search?q=")
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(lambda i: _get(f"{url}{i}")[2]["q"], range(36)))
    finally:
        server.shutdown()
    assert answers == [str(i) for i in range(36)]
    assert peak == 1


def test_slow_requests_overlap_on_the_workers_instead_of_queueing():
    made: list[int] = []

    def make_handler():
        made.append(threading.get_ident())

        def handler(event, context):
            time.sleep(0.5)  # an engine call
            return {"statusCode": 200, "body": json.dumps({"q": event["queryStringParameters"]["q"]})}

        return handler

    server = start_api_server(_Runtime(), SEARCH, None, make_handler=make_handler, workers=4)  # type: ignore[arg-type]
    url = _url(server, "/v1/search?q=")
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda i: _get(f"{url}{i}")[2]["q"], range(4)))
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
    assert answers == ["0", "1", "2", "3"]
    assert elapsed < 1.2, f"4 requests of 0.5 s took {elapsed:.2f} s: served in series"
    assert len(made) == 4 and len(set(made)) == 4  # one handler per worker thread, made on that thread


ECHO = FunctionSpec("Api", "x/", "app.handler", 30, {}, http_routes=(HttpRoute("POST", "/v1/echo"),))


def _with_echo(app: APIGatewayHttpResolver) -> APIGatewayHttpResolver:
    """A test route that reads the resolver's current request *after* waiting, as a route that
    calls the engine does (``caller_key``, error handlers): a shared resolver would by then hold
    another request."""

    @app.post("/v1/echo")
    def echo() -> dict[str, Any]:
        time.sleep(0.3)
        return {"body": app.current_event.json_body, "request_id": app.current_event.request_context.request_id}

    return app


def _post_echo(server: ApiServer, i: int) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        _url(server, "/v1/echo"), data=json.dumps({"n": i}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return i, {**json.loads(r.read()), "header_id": r.headers["apigw-requestid"]}


def test_concurrent_requests_each_get_their_own_answer_from_their_own_resolver():
    api = _api_module()
    server = start_api_server(
        _Runtime(),
        ECHO,
        api.handler,
        make_handler=lambda: api.make_handler(_with_echo(create_app())),
        workers=4,
    )
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda i: _post_echo(server, i), range(8)))
    finally:
        server.shutdown()
    for i, answer in answers:
        assert answer["body"] == {"n": i} and answer["request_id"] == answer["header_id"]


def test_one_resolver_shared_by_the_workers_would_answer_with_another_requests_data():
    """Why each worker needs its own resolver: the check above fails with a shared one."""
    api = _api_module()
    shared = api.make_handler(_with_echo(create_app()))
    server = start_api_server(_Runtime(), ECHO, shared, make_handler=lambda: shared, workers=4)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda i: _post_echo(server, i), range(4)))
    finally:
        server.shutdown()
    assert any(answer["body"] != {"n": i} for i, answer in answers)


def test_the_api_function_makes_a_resolver_per_worker_and_keeps_one_for_lambda():
    api = _api_module()
    make = handler_factory(api.handler)  # what `docllm up` calls: found through Powertools' decorators
    assert make is api.make_handler
    first, second = make(), make()
    assert first is not second and first is not api.handler


def test_a_full_backlog_is_a_503_with_retry_after_and_health_still_answers():
    release = threading.Event()
    started = threading.Event()

    def handler(event, context):
        started.set()
        release.wait(10)
        return {"statusCode": 200, "body": "{}"}

    server = start_api_server(_Runtime(), SEARCH, handler, make_handler=lambda: handler, workers=1, backlog=1)  # type: ignore[arg-type]
    url = _url(server, "/v1/search?q=x")
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            running = pool.submit(_get, url)
            assert started.wait(5)
            waiting = pool.submit(_get, url)
            deadline = time.monotonic() + 5
            while server.workers.admitted < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            status, headers, body = _get(url)
            assert (
                status == 503
                and headers["Retry-After"] == "1"
                and body == {"message": "the API is busy: retry shortly"}
            )
            assert _get(_url(server, "/_local/health"))[0] == 200  # answered on the loop, not by a worker
            release.set()
            assert running.result()[0] == 200 and waiting.result()[0] == 200
        assert _get(url)[0] == 200  # and the next one is admitted again
    finally:
        release.set()
        server.shutdown()


def test_shutdown_lets_a_request_being_answered_finish():
    started = threading.Event()

    def handler(event, context):
        started.set()
        time.sleep(0.3)
        return {"statusCode": 200, "body": json.dumps({"done": True})}

    server = start_api_server(_Runtime(), SEARCH, handler, make_handler=lambda: handler)  # type: ignore[arg-type]
    url = _url(server, "/v1/search?q=x")
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(_get, url)
        assert started.wait(5)
        server.shutdown()
        status, _, body = answer.result()
        assert (status, body) == (200, {"done": True})
    try:
        urllib.request.urlopen(url, timeout=2)
        raise AssertionError("the server still accepts connections after shutdown")
    except urllib.error.URLError:
        pass


def _raw_exchange(port: int, data: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        return s.recv(4096).split(b"\r\n")[0]


def test_malformed_oversized_and_unrouted_requests_get_a_4xx_not_a_crash():
    def handler(event, context):
        return {"statusCode": 200, "body": "{}"}

    fn = FunctionSpec("Api", "x/", "app.handler", 30, {}, http_routes=(HttpRoute("GET", "/v1/search"),))
    server = start_api_server(_Runtime(), fn, handler)  # type: ignore[arg-type]
    port = server.server_address[1]
    try:
        assert _raw_exchange(port, b"\x00\x01 nonsense\r\n\r\n") == b"HTTP/1.1 400 "
        oversized = b"GET /v1/search HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 40000 + b"\r\n\r\n"
        assert _raw_exchange(port, oversized) == b"HTTP/1.1 431 "
        big = b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"a" * 1_100_000
        assert _raw_exchange(port, big) == b"HTTP/1.1 413 "
        host = b"Host: 127.0.0.1:%d\r\n" % port  # any other Host is refused (DNS rebinding): test_local_api_edges
        assert _raw_exchange(port, b"GET /elsewhere HTTP/1.1\r\n" + host + b"\r\n") == b"HTTP/1.1 404 "
        assert _raw_exchange(port, b"GET /v1/search?q=x HTTP/1.1\r\n" + host + b"\r\n") == b"HTTP/1.1 200 "
    finally:
        server.shutdown()
