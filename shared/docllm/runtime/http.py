"""API Gateway (HTTP API, payload 2.0) on 127.0.0.1 for the local runtime.

Requests become the same v2 proxy events API Gateway sends to the API
function. Authentication plays the role of the HTTP API's authorizer: the
caller presents the data directory's API key (``Authorization: Bearer KEY``
or ``x-api-key: KEY``); ``docllm up --no-auth`` turns it off explicitly.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from docllm.runtime.template import FunctionSpec

if TYPE_CHECKING:
    from docllm.runtime.local import Handler, LocalRuntime

MAX_BODY = 1024 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def _route_matches(route_path: str, path: str) -> bool:
    if route_path.endswith("{proxy+}"):
        return path.startswith(route_path[: -len("{proxy+}")])
    r_parts, p_parts = route_path.strip("/").split("/"), path.strip("/").split("/")
    return len(r_parts) == len(p_parts) and all(
        r == p or (r.startswith("{") and r.endswith("}")) for r, p in zip(r_parts, p_parts, strict=True)
    )


def start_api_server(runtime: LocalRuntime, fn: FunctionSpec, handler: Handler) -> ThreadingHTTPServer:
    from docllm.runtime.local import LocalContext

    key = runtime.api_key() if runtime.auth else None
    # Lambda runs one request at a time per execution environment, and handlers rely on it:
    # Powertools' resolver keeps the current event on the module-level app object. The
    # server's threads therefore share one "execution environment" behind a lock.
    invoke_lock = threading.Lock()

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in two writes; with Nagle on, a kept-alive client's delayed
        # ACK holds the body back ~40 ms per request (measured: p50 48 ms → 3.5 ms).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

        def _handle(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/_local/health":
                self._json(200, {"status": "ok"})
                return
            route = next(
                (r for r in fn.http_routes if r.method in (self.command, "ANY") and _route_matches(r.path, url.path)),
                None,
            )
            if route is None:
                self._json(404, {"message": "Not Found"})
                return
            if key is not None and not self._authorised(key):
                self._json(401, {"message": "Unauthorized: send 'Authorization: Bearer <key>' (see docllm status)"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json(413, {"message": "request body too large"})
                return
            raw = self.rfile.read(length) if length else b""
            event = self._event(route.method, route.path, url.path, url.query, raw)
            try:
                with invoke_lock:
                    result = handler(event, LocalContext(fn.name, fn.timeout_s))
            except Exception as e:  # API Gateway turns a crashed integration into a 500
                self._json(500, {"message": "Internal Server Error", "error": type(e).__name__})
                return
            body = result.get("body") or ""
            data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
            headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
            for k, values in (result.get("multiValueHeaders") or {}).items():
                headers[k] = ",".join(values)
            self._send(int(result.get("statusCode", 200)), data, headers)

        def _authorised(self, expected: str) -> bool:
            given = self.headers.get("x-api-key") or ""
            auth = self.headers.get("Authorization") or ""
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            return hmac.compare_digest(given.encode(), expected.encode())

        def _event(self, method: str, route_path: str, path: str, query: str, raw: bytes) -> dict[str, Any]:
            params: dict[str, str] = {}
            for k, v in parse_qsl(query, keep_blank_values=True):
                params[k] = f"{params[k]},{v}" if k in params else v
            headers = {k.lower(): v for k, v in self.headers.items()}
            now = time.time()
            body: str | None = None
            is_b64 = False
            if raw:
                try:
                    body = raw.decode("utf-8")
                except UnicodeDecodeError:
                    body, is_b64 = base64.b64encode(raw).decode(), True
            route_key = f"{method} {route_path}"
            return {
                "version": "2.0",
                "routeKey": route_key,
                "rawPath": path,
                "rawQueryString": query,
                "headers": headers,
                "queryStringParameters": params or None,
                "requestContext": {
                    "accountId": "000000000000",
                    "apiId": "local",
                    "domainName": headers.get("host", "127.0.0.1"),
                    "domainPrefix": "local",
                    "http": {
                        "method": self.command,
                        "path": path,
                        "protocol": "HTTP/1.1",
                        "sourceIp": self.client_address[0],
                        "userAgent": headers.get("user-agent", ""),
                    },
                    "requestId": str(uuid.uuid4()),
                    "routeKey": route_key,
                    "stage": "$default",
                    "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                    "timeEpoch": int(now * 1000),
                },
                "body": body,
                "isBase64Encoded": is_b64,
            }

        do_GET = _handle  # noqa: N815 - http.server's naming
        do_POST = _handle  # noqa: N815
        do_PUT = _handle  # noqa: N815
        do_DELETE = _handle  # noqa: N815

    server = _Server((runtime.host, runtime.port), RequestHandler)
    threading.Thread(target=server.serve_forever, name="api-http", daemon=True).start()
    return server
