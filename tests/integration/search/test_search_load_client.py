from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.search.load import run_load


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 500 if "fail" in self.path else 200
        body = json.dumps({"hits": []}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_load_client_counts_successes_and_errors(server: str) -> None:
    report = run_load(server, "key", rate=40, duration_s=0.5, queries=["bucket", "fail"])
    assert report.requests == 20
    assert report.ok == 10 and report.errors == 10
    assert report.status_counts == {"200": 10, "500": 10}
    assert report.p50_ms > 0


def test_load_client_refuses_non_loopback_targets() -> None:
    with pytest.raises(ValueError):
        run_load("http://10.0.0.1:80", None, 1, 1, ["q"])
