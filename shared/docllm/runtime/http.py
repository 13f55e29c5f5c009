"""API Gateway (HTTP API, payload 2.0) on 127.0.0.1 for the local runtime.

Requests become the same v2 proxy events API Gateway sends to the API
function. Authentication plays the role of the HTTP API's authorizer: the
caller presents the data directory's API key (``Authorization: Bearer KEY``
or ``x-api-key: KEY``); ``docllm up --no-auth`` turns it off explicitly.

One asyncio loop on one thread reads and writes every connection, and answers on
the spot what API Gateway decides before it invokes (health, 404, 405, 401). The
invocations themselves run on a bounded pool of worker threads (:class:`Workers`),
as API Gateway invokes several Lambda execution environments at once: ``POST /v1/ask``
waits hundreds of milliseconds on the inference engine, and requests served in series
would waste the engine's continuous batching. Each worker has a handler of its own,
since a handler is only safe one invocation at a time (Powertools' resolver keeps the
current request on itself): a handler module that defines ``make_handler()`` gives each
worker one; any other handler runs one invocation at a time, as in one execution
environment. When every worker is busy and :data:`BACKLOG` requests already wait, the
answer is ``503`` with ``Retry-After`` rather than an unbounded queue. (A thread per
connection was measured first: with 64 kept-alive connections the threads spent their
time queuing for the GIL, p99 ~1 s at 200 req/s; a few workers behind one loop do not.)
HTTP/1.1 framing is h11's, not ours.

Streaming. Lambda behind API Gateway's HTTP API answers whole responses; this front also lets a
handler stream, as Lambda response streaming would: the context an invocation gets carries a
``response_stream`` (:class:`StreamBody`). A handler that calls its ``start(status, headers)`` has its
head sent at once and each ``write(data)`` sent as a chunk (``Transfer-Encoding: chunked``); the
body ends when the invocation returns. A handler that never calls it is answered from its proxy
result as always. While a body streams, the connection is watched: once the client has closed it,
the next ``write`` raises :class:`ClientDisconnectedError` (a ``ConnectionError``), so the handler
stops — ``POST /v1/ask`` closes the engine's stream, which cancels the generation.

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
import concurrent.futures
import contextlib
import dataclasses
import errno
import hmac
import inspect
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

import h11

from docllm.dashboard.auth import LOGIN_PATH, is_dashboard_path, is_public, session_valid
from docllm.exceptions import ConfigurationError, PortInUseError
from docllm.runtime.template import FunctionSpec, HttpRoute

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
#: Handler invocations at once. The engine batches up to 8 requests; more workers than that would
#: only queue there, and each one is a thread contending for the GIL with the loop.
WORKERS = 8
#: Requests that may wait for a worker before the API answers 503 (one more engine batch's worth
#: and then some): a client is better told to retry than left waiting behind an unbounded queue.
BACKLOG = 32
BUSY_RETRY_AFTER_S = 1
#: How long a shutdown waits for requests already being answered.
SHUTDOWN_GRACE_S = 10.0


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


class ClientDisconnectedError(ConnectionError):
    """The client closed the connection its response was streaming to."""


class StreamBody:
    """The body of a streamed reply, written by the invocation's worker thread and sent by the loop.

    The worker side (what a handler sees as ``context.response_stream``): :meth:`start`, :meth:`write`,
    :meth:`close`, :attr:`disconnected`. The loop side: :attr:`head` (a future of the status and
    headers), :meth:`next_chunk` (None at the end) and :meth:`abandon` (the client has gone).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.head: asyncio.Future[tuple[int, list[tuple[str, str]]]] = loop.create_future()
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._gone = threading.Event()
        self.started = False
        self._closed = False
        self.request_id = ""

    # -- the worker's side ---------------------------------------------------------------------
    @property
    def disconnected(self) -> bool:
        return self._gone.is_set()

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Send the head now (once); the body follows through :meth:`write`."""
        if self.started:
            raise RuntimeError("the response has started already")
        self.started = True
        head = [(str(k), str(v)) for k, v in headers]
        if self.request_id:
            head.append(("apigw-requestid", self.request_id))
        self._call(self._set_head, (int(status), head))

    def write(self, data: bytes) -> None:
        """Send ``data`` as the next chunk of the body (raises ClientDisconnectedError once the client left)."""
        if not self.started:
            raise RuntimeError("start() the response before writing its body")
        if self._gone.is_set():
            raise ClientDisconnectedError("the client closed the connection")
        if data:
            self._call(self._chunks.put_nowait, bytes(data))

    def close(self) -> None:
        """End the body (the invocation returned); a stream never started has nothing to end."""
        if self.started and not self._closed:
            self._closed = True
            self._call(self._chunks.put_nowait, None)

    def _call(self, fn: Callable[..., Any], arg: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:  # the loop is closed: the server shut down under the stream
            self._gone.set()

    def _set_head(self, head: tuple[int, list[tuple[str, str]]]) -> None:
        if not self.head.done():
            self.head.set_result(head)

    # -- the loop's side -----------------------------------------------------------------------
    async def next_chunk(self) -> bytes | None:
        return await self._chunks.get()

    def abandon(self) -> None:
        """The client has gone: the worker's next write raises."""
        self._gone.set()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    stream: StreamBody | None = None
    """A streamed body (``body`` is then empty): the head is sent, then each chunk as it comes."""

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


@dataclass(frozen=True)
class Invocation:
    """A request that API Gateway would pass to the function, and the route it matched."""

    route: HttpRoute
    request: Request
    stream: StreamBody | None = None
    """Where the handler may stream its response (given as ``context.response_stream``), if anywhere."""


def triage(fn: FunctionSpec, key: str | None, request: Request) -> Reply | Invocation:
    """What API Gateway decides before invoking anything: health, 404, 405, 401 — or the invocation."""
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
        # The dashboard's pages (docllm.dashboard.auth): a browser signs in with the key once and then
        # presents a session cookie derived from it; the sign-in page checks the key itself.
        if is_dashboard_path(path) and (is_public(path) or session_valid(request.headers, key)):
            return Invocation(route, request)
        if is_dashboard_path(path) and method == "GET":
            return Reply(303, [("Location", LOGIN_PATH), ("Content-Type", "text/plain")], b"sign in\n")
        return Reply.json(401, {"message": UNAUTHORISED})
    return Invocation(route, request)


def respond(
    fn: FunctionSpec, handler: Callable[[dict[str, Any], Any], Any], key: str | None, request: Request
) -> Reply:
    """What API Gateway would answer: route, authorise, invoke, translate the proxy result."""
    decided = triage(fn, key, request)
    return decided if isinstance(decided, Reply) else invoke(fn, handler, decided)


def invoke(fn: FunctionSpec, handler: Callable[[dict[str, Any], Any], Any], invocation: Invocation) -> Reply:
    """Invoke the function with the proxy event of ``invocation``; translate its proxy result."""
    from docllm.lambda_support import invocation_log_keys
    from docllm.runtime.local import LocalContext

    route, request = invocation.route, invocation.request
    path, method = urlsplit(request.target).path, request.method
    event = proxy_event(route.method, route.path, request)
    request_id = str(event["requestContext"]["requestId"])
    context = LocalContext(fn.name, fn.timeout_s)
    stream = invocation.stream
    if stream is not None:
        stream.request_id = request_id
        context.response_stream = stream  # type: ignore[attr-defined]  # only where this front can stream
    try:
        # Worker threads log at the same time: this request's records name this invocation.
        with invocation_log_keys(context, correlation_id=request_id):
            try:
                result = handler(event, context)
            finally:
                if stream is not None:
                    stream.close()  # a streamed body ends with its invocation, however that ended
        if stream is not None and stream.started:
            return Reply(200, [], b"")  # the head and body went out through the stream; nothing else will
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


Invoker = Callable[[Invocation], Reply]


class Workers:
    """``size`` daemon threads that run invocations off the event loop, each with an invoker of its
    own (``make_invoker`` is called on the thread, at its first invocation). At most ``size + backlog``
    invocations are admitted at once; :meth:`submit` refuses the next one (None) instead of queueing it.
    Daemon threads: an invocation stuck on a slow dependency does not keep the process from exiting."""

    def __init__(self, make_invoker: Callable[[], Invoker], *, size: int = WORKERS, backlog: int = BACKLOG):
        if size < 1 or backlog < 0:
            raise ValueError("size must be >= 1 and backlog >= 0")
        self.size, self.capacity = size, size + backlog
        self._make_invoker = make_invoker
        self._jobs: queue.SimpleQueue[tuple[Invocation, concurrent.futures.Future[Reply]] | None] = queue.SimpleQueue()
        self._admitted = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"api-worker-{i}", daemon=True) for i in range(size)]
        for t in self._threads:
            t.start()

    @property
    def admitted(self) -> int:
        """Invocations running or waiting for a worker."""
        with self._lock:
            return self._admitted

    def submit(self, invocation: Invocation) -> concurrent.futures.Future[Reply] | None:
        """The future reply to ``invocation``, or None when the workers and the backlog are full."""
        with self._lock:
            if self._admitted >= self.capacity:
                return None
            self._admitted += 1
        future: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        self._jobs.put((invocation, future))
        return future

    def _work(self) -> None:
        invoker: Invoker | None = None
        while (job := self._jobs.get()) is not None:
            invocation, future = job
            try:
                if not future.set_running_or_notify_cancel():
                    continue  # its connection was closed while it waited
                if invoker is None:
                    invoker = self._make_invoker()
                future.set_result(invoker(invocation))
            except BaseException as e:  # the loop turns it into a 500; the worker carries on
                future.set_exception(e)
            finally:
                with self._lock:
                    self._admitted -= 1

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop each thread after the invocation it is running (waiting up to ``timeout_s`` in all)."""
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


def busy_reply() -> Reply:
    """Every worker busy and the backlog full: come back shortly (nothing was invoked)."""
    reply = Reply.json(503, {"message": "the API is busy: retry shortly"})
    headers = [*reply.headers, ("Retry-After", str(BUSY_RETRY_AFTER_S)), ("apigw-requestid", str(uuid.uuid4()))]
    return Reply(503, headers, reply.body)


class ApiServer:
    """An asyncio HTTP/1.1 server on its own thread; ``shutdown()`` stops it.

    ``triage`` runs on the loop and either answers (:class:`Reply`) or asks for an invocation, which
    ``workers`` run; the connection waits for it without holding up any other."""

    def __init__(
        self,
        host: str,
        port: int,
        triage: Callable[[Request], Reply | Invocation],
        workers: Workers,
        *,
        check_host: bool = True,
    ):
        self._triage = triage
        self.workers = workers
        self._closing = False
        self._answering: set[asyncio.Task[None]] = set()  # connections between a request and its reply
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
            workers.close()
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
                if task is not None:
                    self._answering.add(task)
                if isinstance(body, Reply):
                    reply = body
                elif (bad_host := self._host_refused(headers)) is not None:
                    reply, refused = bad_host, True  # nothing runs, and nothing more is read from this client
                else:
                    reply = await self._answer(
                        Request(
                            request.method.decode("ascii"), request.target.decode("latin-1"), headers, body, peer[0]
                        )
                    )
                if reply.stream is not None:
                    await self._send_stream(conn, reader, writer, reply)
                else:
                    await self._send(conn, writer, reply, head=request.method == b"HEAD")
                if task is not None:
                    self._answering.discard(task)
                if self._closing or refused or conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
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
                self._answering.discard(task)

    async def _answer(self, request: Request) -> Reply:
        decided = self._triage(request)
        if isinstance(decided, Reply):
            return decided
        stream = StreamBody(self._loop)
        future = self.workers.submit(dataclasses.replace(decided, stream=stream))
        if future is None:
            return busy_reply()
        try:
            pending = asyncio.wrap_future(future)
            # The reply, or the head of a streamed one, whichever comes first.
            waiting: set[asyncio.Future[Any]] = {pending, stream.head}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if stream.head.done():
                pending.add_done_callback(_log_stream_failure)
                status, headers = stream.head.result()
                return Reply(status, headers, b"", stream=stream)
            stream.head.cancel()
            return pending.result()
        except Exception as e:  # the worker could not make its handler: as a crashed integration
            request_id = str(uuid.uuid4())
            log.error("%s %s (request %s): no handler to invoke: %s", request.method, request.target, request_id, e)
            reply = Reply.json(500, {"message": "Internal Server Error", "request_id": request_id})
            return Reply(500, [*reply.headers, ("apigw-requestid", request_id)], reply.body)

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, reply: Reply, *, head: bool = False) -> None:
        headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
        writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        if not head:  # the answer to HEAD has the headers of the body it does not send
            writer.write(conn.send(h11.Data(data=reply.body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    @staticmethod
    async def _send_stream(
        conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: Reply
    ) -> None:
        """The head, then each chunk as the invocation writes it (chunked: no Content-Length), while
        watching for the client closing its end; then abandon the stream, which stops the handler."""
        body = reply.stream
        assert body is not None
        watch = asyncio.ensure_future(_closed_by_client(conn, reader))
        try:
            writer.write(conn.send(h11.Response(status_code=reply.status, headers=reply.headers)))
            await writer.drain()
            while True:
                chunk_task = asyncio.ensure_future(body.next_chunk())
                await asyncio.wait({chunk_task, watch}, return_when=asyncio.FIRST_COMPLETED)
                if not chunk_task.done():
                    chunk_task.cancel()
                    raise ClientDisconnectedError("the client closed the connection mid-stream")
                chunk = chunk_task.result()
                if chunk is None:
                    break
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        except BaseException:
            body.abandon()
            raise
        finally:
            watch.cancel()

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

    def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop accepting; close idle connections; let requests being answered finish (up to
        ``grace_s``), then close the rest; stop the loop, its thread and the workers."""

        async def close() -> None:
            self._closing = True  # a connection closes after the reply it is sending
            if self._server is not None:
                self._server.close()
            for task in self._tasks - self._answering:
                task.cancel()
            if self._answering:
                await asyncio.wait(set(self._answering), timeout=grace_s)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(grace_s + 10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self.workers.close()

    def server_close(self) -> None:
        """Closed by :meth:`shutdown`; kept for the ``socketserver`` interface callers use."""


async def _closed_by_client(conn: h11.Connection, reader: asyncio.StreamReader) -> None:
    """Return once the client has closed its end (EOF). Bytes it sends meanwhile (a pipelined next
    request) are handed to h11, which keeps them for the next cycle; past MAX_BODY it stops reading."""
    received = 0
    while received <= MAX_BODY:
        data = await reader.read(65536)
        if not data:
            return
        received += len(data)
        conn.receive_data(data)
    await asyncio.Event().wait()  # a client that floods the connection is left to the write path


def _log_stream_failure(reply: asyncio.Future[Reply]) -> None:
    """A streamed invocation's own result was never sent; only its failure is worth a line."""
    if not reply.cancelled() and (e := reply.exception()) is not None:
        log.error("a streamed invocation failed after its head was sent: %s", e, exc_info=e)


def handler_factory(handler: Handler) -> Callable[[], Handler]:
    """How each worker gets a handler of its own: the ``make_handler()`` of the module that defines
    ``handler`` (looked up through Powertools' decorators), when it has one. Without one there is
    nothing to tell whether the handler keeps per-request state, so the workers share ``handler``
    one invocation at a time, as one Lambda execution environment runs it."""
    make = getattr(inspect.unwrap(handler), "__globals__", {}).get("make_handler")
    if callable(make):
        return cast("Callable[[], Handler]", make)
    lock = threading.Lock()

    def one_at_a_time(event: dict[str, Any], context: Any) -> Any:
        with lock:
            return handler(event, context)

    return lambda: one_at_a_time


def start_api_server(
    runtime: _RuntimeLike,
    fn: FunctionSpec,
    handler: Handler,
    *,
    make_handler: Callable[[], Handler] | None = None,
    workers: int = WORKERS,
    backlog: int = BACKLOG,
) -> ApiServer:
    """Serve ``fn``'s routes; ``make_handler`` (default: :func:`handler_factory`) gives each of the
    ``workers`` threads its handler."""
    key = runtime.api_key() if runtime.auth else None
    make = make_handler if make_handler is not None else handler_factory(handler)

    def make_invoker() -> Invoker:
        own = make()
        return lambda invocation: invoke(fn, own, invocation)

    pool = Workers(make_invoker, size=workers, backlog=backlog)
    return ApiServer(runtime.host, runtime.port, lambda request: triage(fn, key, request), pool)
