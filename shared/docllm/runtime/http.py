"""API Gateway (HTTP API, payload 2.0) on 127.0.0.1 for the local runtime.

Requests become the same v2 proxy events API Gateway sends to the API
function. Authentication plays the role of the HTTP API's authorizer: the
caller presents the data directory's API key (``Authorization: Bearer KEY``
or ``x-api-key: KEY``); ``docllm up --no-auth`` turns it off explicitly.

One asyncio loop on one thread serves every connection and runs the handler
inline, one request at a time — which is what one Lambda execution environment
does, and what handlers rely on (Powertools' resolver keeps the current request
on a module-level object). A thread per connection was measured first: with 64
kept-alive connections the threads spent their time queuing for the GIL (p99
~1 s at 200 req/s). HTTP/1.1 framing is h11's, not ours.

Edges, as one 404 shape and honest statuses: a path no route has (``/v1/status/`` included: a
trailing slash is another path, as on API Gateway) is ``404 {"message": "Not Found"}``; a path
some route has, asked with another method, ``405`` with ``Allow``. A request whose ``Host`` is not
the address served (``127.0.0.1:PORT``, ``localhost:PORT`` or ``[::1]:PORT``) is refused with a 400
before anything else: a web page whose name was rebound to 127.0.0.1 (DNS rebinding) cannot get a
browser to talk to the API on its behalf.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import h11

from docllm.exceptions import ConfigurationError, PortInUseError
from docllm.runtime.template import FunctionSpec

if TYPE_CHECKING:
    from docllm.runtime.local import Handler

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024  # API Gateway allows 10 KiB of headers
IDLE_TIMEOUT_S = 75.0  # API Gateway's own idle timeout for kept-alive connections is of this order
UNAUTHORISED = "Unauthorized: send 'Authorization: Bearer <key>' (see docllm status)"
NOT_FOUND = {"message": "Not Found"}
METHOD_NOT_ALLOWED = {"message": "Method Not Allowed"}
#: The names a client on this machine may give the loopback address in ``Host``.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class _RuntimeLike(Protocol):  # what start_api_server needs from LocalRuntime (tests pass a stand-in)
    host: str
    port: int
    auth: bool

    def api_key(self) -> str: ...


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    source_ip: str


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def json(cls, status: int, payload: dict[str, Any]) -> Reply:
        return cls(status, [("Content-Type", "application/json")], json.dumps(payload).encode())


def _route_matches(route_path: str, path: str) -> bool:
    """Segment by segment, as API Gateway matches: ``/v1/status/`` and ``//v1/status`` are not
    ``/v1/status``; a ``{param}`` takes one non-empty segment, ``{proxy+}`` the rest."""
    if route_path.endswith("{proxy+}"):
        prefix = route_path[: -len("{proxy+}")]
        return path.startswith(prefix) and len(path) > len(prefix)
    r_parts, p_parts = route_path.split("/"), path.split("/")
    return len(r_parts) == len(p_parts) and all(
        r == p or (r.startswith("{") and r.endswith("}") and p != "") for r, p in zip(r_parts, p_parts, strict=True)
    )


def served_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` values that name the address the API serves (lower case)."""
    names = set(LOOPBACK_NAMES)
    if host not in ("", "0.0.0.0", "::"):  # bound to every address: only the loopback names
        names.add(f"[{host}]" if ":" in host else host)
    hosts = {f"{n.lower()}:{port}" for n in names}
    if port == 80:
        hosts |= {n.lower() for n in names}
    return frozenset(hosts)


def _authorised(headers: dict[str, str], expected: str) -> bool:
    given = headers.get("x-api-key", "")
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return hmac.compare_digest(given.encode(), expected.encode())


def proxy_event(route_method: str, route_path: str, request: Request) -> dict[str, Any]:
    """The API Gateway HTTP API (payload 2.0) event for one request."""
    url = urlsplit(request.target)
    headers, raw, method = request.headers, request.body, route_method
    params: dict[str, str] = {}
    for k, v in parse_qsl(url.query, keep_blank_values=True):
        params[k] = f"{params[k]},{v}" if k in params else v
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
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": headers,
        "queryStringParameters": params or None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
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


def respond(
    fn: FunctionSpec, handler: Callable[[dict[str, Any], Any], Any], key: str | None, request: Request
) -> Reply:
    """What API Gateway would answer: route, authorise, invoke, translate the proxy result."""
    from docllm.lambda_support import invocation_log_keys
    from docllm.runtime.local import LocalContext

    path, method = urlsplit(request.target).path, request.method
    if path == "/_local/health":
        return Reply.json(200, {"status": "ok"})
    on_path = [r for r in fn.http_routes if _route_matches(r.path, path)]
    route = next((r for r in on_path if r.method in (method, "ANY")), None)
    if route is None and on_path:
        reply = Reply.json(405, METHOD_NOT_ALLOWED)
        return Reply(405, [*reply.headers, ("Allow", ", ".join(sorted({r.method for r in on_path})))], reply.body)
    if route is None:
        return Reply.json(404, NOT_FOUND)
    if key is not None and not _authorised(request.headers, key):
        return Reply.json(401, {"message": UNAUTHORISED})
    event = proxy_event(route.method, route.path, request)
    request_id = str(event["requestContext"]["requestId"])
    context = LocalContext(fn.name, fn.timeout_s)
    try:
        # Worker threads log at the same time: this request's records name this invocation.
        with invocation_log_keys(context, correlation_id=request_id):
            result = handler(event, context)
        raw = result.get("body") or ""
        data = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
        out = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
        out += [(k, ",".join(vs)) for k, vs in (result.get("multiValueHeaders") or {}).items()]
        status = int(result.get("statusCode", 200))
    except Exception as e:
        # API Gateway answers a crashed integration or a malformed proxy result with a bare 500:
        # the caller gets the request id, the log gets the error.
        log.error("%s %s (request %s): the API function failed: %s", method, path, request_id, e, exc_info=e)
        reply = Reply.json(500, {"message": "Internal Server Error", "request_id": request_id})
        return Reply(reply.status, [*reply.headers, ("apigw-requestid", request_id)], reply.body)
    return Reply(status, [*out, ("apigw-requestid", request_id)], data)


class ApiServer:
    """An asyncio HTTP/1.1 server on its own thread; ``shutdown()`` stops it."""

    def __init__(self, host: str, port: int, answer: Callable[[Request], Reply], *, check_host: bool = True):
        self._answer = answer
        self._hosts: frozenset[str] | None = None
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, args=(host, port), name="api-http", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            if getattr(self._error, "errno", None) == errno.EADDRINUSE:
                raise PortInUseError(host, port) from self._error
            if isinstance(self._error, OSError):
                reason = self._error.strerror or str(self._error)
                raise ConfigurationError(f"cannot serve the API on {host}:{port}: {reason}") from self._error
            raise self._error
        assert self._server is not None
        self.server_address: tuple[str, int] = self._server.sockets[0].getsockname()[:2]
        if check_host:
            self._hosts = served_hosts(host, self.server_address[1])

    def _host_refused(self, headers: dict[str, str]) -> Reply | None:
        """A 400 for a ``Host`` that is not the address served (DNS rebinding), else None."""
        if self._hosts is None or headers.get("host", "").strip().lower() in self._hosts:
            return None
        port = self.server_address[1]
        return Reply.json(
            400,
            {"message": f"Host header must name the address this API serves: 127.0.0.1:{port} or localhost:{port}"},
        )

    def _run(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._connection, host, port, backlog=512)
            )
        except OSError as e:
            self._error = e
            self._loop.close()
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        try:
            while True:
                request, body = await self._read_request(conn, reader)
                if request is None:
                    break
                refused = isinstance(body, Reply)  # refused while reading: the rest was not read
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
                if isinstance(body, Reply):
                    reply = body
                elif (bad_host := self._host_refused(headers)) is not None:
                    reply, refused = bad_host, True  # nothing runs, and nothing more is read from this client
                else:
                    reply = self._answer(
                        Request(
                            request.method.decode("ascii"), request.target.decode("latin-1"), headers, body, peer[0]
                        )
                    )
                await self._send(conn, writer, reply, head=request.method == b"HEAD")
                if refused or conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except h11.RemoteProtocolError:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
                    await self._send(conn, writer, Reply.json(400, {"message": "malformed HTTP request"}))
        except (ConnectionError, TimeoutError):
            pass  # the client went away or idled past the keep-alive timeout
        except asyncio.CancelledError:
            pass  # shutting down
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, reply: Reply, *, head: bool = False) -> None:
        headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
        writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        if not head:  # the answer to HEAD has the headers of the body it does not send
            writer.write(conn.send(h11.Data(data=reply.body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes | Reply]:
        request: h11.Request | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT_S)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
                # h11 bounds only *incomplete* headers; a complete oversized block arrives in one read.
                if sum(len(k) + len(v) for k, v in event.headers) > MAX_HEADER_BYTES:
                    return request, Reply.json(431, {"message": "request headers too large"})
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    return request, Reply.json(413, {"message": "request body too large"})
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return request, b"".join(chunks)
            else:  # ConnectionClosed or PAUSED
                return None, b""

    def shutdown(self) -> None:
        """Stop accepting, cancel open connections, stop the loop and wait for its thread."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def server_close(self) -> None:
        """Closed by :meth:`shutdown`; kept for the ``socketserver`` interface callers use."""


def start_api_server(runtime: _RuntimeLike, fn: FunctionSpec, handler: Handler) -> ApiServer:
    key = runtime.api_key() if runtime.auth else None

    def answer(request: Request) -> Reply:
        return respond(fn, handler, key, request)

    return ApiServer(runtime.host, runtime.port, answer)
