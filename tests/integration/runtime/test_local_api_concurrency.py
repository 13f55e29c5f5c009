"""The local API front serves requests on many threads but runs the handler one at a time,
as one Lambda execution environment does (Powertools' resolver keeps per-request state
on a module-level object; concurrent calls would answer one request with another's data)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from docllm.runtime.http import start_api_server
from docllm.runtime.template import FunctionSpec, HttpRoute


@dataclass
class _Runtime:
    host: str = "127.0.0.1"
    port: int = 0
    auth: bool = False


def test_handler_invocations_never_overlap_while_requests_do():
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

    fn = FunctionSpec("Api", "x/", "app.handler", 30, {}, http_routes=(HttpRoute("GET", "/v1/search"),))
    server = start_api_server(_Runtime(), fn, handler)  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/search?q="
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(lambda i: json.loads(urllib.request.urlopen(f"{url}{i}").read())["q"], range(36)))
    finally:
        server.shutdown()
        server.server_close()
    assert answers == [str(i) for i in range(36)]
    assert peak == 1


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
