"""OpenAI-compatible HTTP server over the local engine: ``python -m docllm.serving.server``.

Run (a docllm Hugging Face export; ``--port 0`` picks a free port)::

    python -m docllm.serving.server --export out/hf --model-name tiny-s3-v3 --port 0
    READY http://127.0.0.1:41873

Routes: ``GET /health`` (503 while the model loads, when the server drains or its engine has
stopped), ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``
(:mod:`docllm.serving.chat` renders the messages), ``GET /metrics`` (Prometheus text).
``stream: true`` answers with server-sent events in OpenAI's chunk format, ending with
``data: [DONE]``. A full queue answers 429 with ``Retry-After`` at once; bad input 400 with
OpenAI's error body; another model name 404.

Why the standard library's ``ThreadingHTTPServer`` (a thread per connection) rather than
asyncio + h11 as ``docllm.runtime.http`` uses: here the connection threads do no compute —
each blocks on its request's event queue while the engine's scheduler thread runs the model,
and the GIL is released while they wait. Concurrency is bounded by the engine's queue
(``--max-queue``) plus its batch, i.e. tens of connections, not the hundreds of kept-alive
API clients that made the runtime's API choose an event loop. A thread also makes the two
things that matter here direct: a write to a client that has gone raises at once (cancel the
request), and a blocking wait can poll the socket for EOF (cancel a non-streamed request whose
client hung up).

The engine runs in a child process of its own (:mod:`docllm.serving.engine_process`; ``--in-process``
keeps it here): this process parses, tokenizes, validates, refuses (429) and writes the streams, the
child decodes, so the connection threads never take the interpreter lock from the scheduler.

SIGTERM (or SIGINT) drains: the listening socket closes (new connections are refused, so a
deployer that already points clients at a new engine loses nothing), requests in flight —
streams included — run to completion for up to ``--drain-timeout`` seconds, then the process
exits 0. ``docllm up`` swaps versions this way without failing a request.

``--fault errors|slow:SECONDS|ungrounded`` makes every completion fail (500), wait, or answer an
invented sentence: a testing aid for benchmarks and tests (:mod:`docllm.serving.faults`), off by
default; ``/health`` and ``/v1/models`` stay healthy and name the fault.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import BaseModel, ValidationError

from docllm.exceptions import InvalidRequestError
from docllm.serving.engine import DTYPES, LocalEngine, RequestHandle
from docllm.serving.engine_process import EngineProcess
from docllm.serving.exceptions import (
    EngineBusyError,
    EngineUnavailableError,
    GenerationTimeoutError,
    PromptTooLongError,
)
from docllm.serving.faults import UNGROUNDED_TEXT, EngineFault, parse_fault
from docllm.serving.metrics import Registry
from docllm.serving.openai_api import (
    ChatCompletionRequest,
    CompletionRequest,
    chat_chunk,
    chat_completion,
    completion,
    completion_chunk,
    error_body,
    new_id,
    usage_chunk,
)

log = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024
IDLE_TIMEOUT_S = 120.0  # a kept-alive connection with no request for this long is closed
DISCONNECT_POLL_S = 0.25  # how often a waiting request checks that its client is still there
RETRY_AFTER_BUSY_S = 1
#: The engines ``docllm up`` starts read their dtype here (bfloat16: faster on CPUs with AVX512-BF16 or
#: AMX, not exact against the fp32 model the gate evaluated; docs/serving.md).
ENV_DTYPE = "DOCLLM_ENGINE_DTYPE"
ROUTES = ("/health", "/v1/models", "/v1/completions", "/v1/chat/completions", "/metrics")


class ServerState:
    """What the handlers share: the engine once loaded, the drain flag, requests in flight, metrics."""

    def __init__(self, model_name: str, fault: EngineFault | None = None) -> None:
        self.model_name = model_name
        self.fault = fault
        self.created = int(time.time())
        self.engine: LocalEngine | EngineProcess | None = None
        self.draining = False
        self.registry = Registry()
        self.http_requests = self.registry.counter(
            "docllm_http_requests_total", "HTTP requests by route and status.", ("route", "status")
        )
        self.http_duration = self.registry.histogram(
            "docllm_http_request_duration_seconds", "HTTP request duration (streams: to the last event).", ("route",)
        )
        self._in_flight = 0
        self._idle = threading.Condition()

    def enter(self) -> None:
        with self._idle:
            self._in_flight += 1

    def leave(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no generation request is in flight; False if the timeout came first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)


class EngineHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # idle kept-alive connections must not keep a drained process alive

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        self.state = state
        super().__init__(address, _Handler)


class _ClientGone(Exception):
    """The client closed its connection mid-response."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    server: EngineHTTPServer
    _status = 0

    # --- plumbing ---------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    @property
    def state(self) -> ServerState:
        return self.server.state

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.state.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_json(status, error_body(status, message, param=param, code=code), headers)

    def _client_gone(self) -> bool:
        """Whether the client closed its side (EOF readable); pipelined bytes do not count."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _timed(self, route: str, serve: Callable[[], None]) -> None:
        t0 = time.monotonic()
        self._status = 0
        try:
            serve()
        finally:
            label = route if route in ROUTES else "other"
            self.state.http_requests.inc(route=label, status=str(self._status or 499))
            self.state.http_duration.observe(time.monotonic() - t0, route=label)

    # --- routes -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self._timed(path, lambda: self._get(path))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        self._timed(path, lambda: self._post(path))

    def _get(self, path: str) -> None:
        state = self.state
        if path == "/metrics":
            data = (state.registry.render() + (state.engine.registry.render() if state.engine else "")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif path == "/health":
            engine = state.engine
            status = (
                "draining" if state.draining else "loading" if engine is None else "ok" if engine.alive() else "stopped"
            )
            health: dict[str, Any] = {"status": status, "model": state.model_name}
            if state.fault is not None:
                health["fault"] = state.fault.spec
            self._send_json(200 if status == "ok" else 503, health)
        elif path == "/v1/models" or path.startswith("/v1/models/"):
            card = {
                "id": state.model_name,
                "object": "model",
                "created": state.created,
                "owned_by": "docllm",
                "max_model_len": state.engine.context_length if state.engine else None,
            }
            if state.fault is not None:
                card["fault"] = state.fault.spec
            if path == "/v1/models":
                self._send_json(200, {"object": "list", "data": [card]})
            elif path.removeprefix("/v1/models/") == state.model_name:
                self._send_json(200, card)
            else:
                self._model_not_found(path.removeprefix("/v1/models/"))
        else:
            self._error(404, f"no route GET {path}", code="not_found")

    def _model_not_found(self, name: str) -> None:
        self._error(
            404,
            f"The model `{name}` does not exist; this engine serves `{self.state.model_name}`.",
            param="model",
            code="model_not_found",
        )

    def _post(self, path: str) -> None:
        kinds: dict[str, type[CompletionRequest] | type[ChatCompletionRequest]] = {
            "/v1/completions": CompletionRequest,
            "/v1/chat/completions": ChatCompletionRequest,
        }
        if path not in kinds:
            self._error(404, f"no route POST {path}", code="not_found")
            return
        body = self._read_body()
        if body is None:
            return
        state = self.state
        if state.draining:
            self._error(503, "the engine is shutting down", headers={"Retry-After": "1"})
            return
        engine = state.engine
        if engine is None:
            self._error(503, "the model is loading", code="loading", headers={"Retry-After": "5"})
            return
        try:
            request = kinds[path].model_validate(body)
        except ValidationError as e:
            self._validation_error(e)
            return
        if request.model != state.model_name:
            self._model_not_found(request.model)
            return
        fault = state.fault
        if fault is not None and fault.kind == "errors":
            message = f"injected engine fault ({fault.spec}): this engine fails every completion"
            self._error(500, message, code="injected_fault")
            return
        state.enter()
        try:
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.seconds)
            self._generate(engine, request)
        finally:
            state.leave()

    def _read_body(self) -> Any | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._error(400, "send a JSON body with a Content-Length header")
            return None
        if int(length) > MAX_BODY:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            self._error(413, f"the request body exceeds {MAX_BODY} bytes")
            return None
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, "the request body is not valid JSON")
            return None
        if not isinstance(body, dict):
            self._error(400, "the request body must be a JSON object")
            return None
        return body

    def _validation_error(self, e: ValidationError) -> None:
        first = e.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        message = first["msg"].removeprefix("Value error, ")
        self._error(400, f"{param}: {message}" if param else message, param=param)

    def _generate(
        self, engine: LocalEngine | EngineProcess, request: CompletionRequest | ChatCompletionRequest
    ) -> None:
        chat = isinstance(request, ChatCompletionRequest)
        try:
            prompt = request.prompt_text() if isinstance(request, ChatCompletionRequest) else request.prompt_input()
            ids = engine.tokenizer.encode_prompt(prompt) if isinstance(prompt, str) else prompt
            params = request.generation_params(prompt_tokens=len(ids), context_length=engine.context_length)
            handle = engine.submit(ids, params)
        except ValidationError as e:
            self._validation_error(e)
            return
        except PromptTooLongError as e:  # OpenAI's code for it, so clients map it without reading the message
            self._error(400, str(e), param="messages" if chat else "prompt", code="context_length_exceeded")
            return
        except InvalidRequestError as e:  # token ids outside the vocabulary
            self._error(400, str(e), param="prompt")
            return
        except EngineBusyError as e:
            self._error(429, str(e), code="engine_busy", headers={"Retry-After": str(RETRY_AFTER_BUSY_S)})
            return
        except EngineUnavailableError as e:
            self._error(503, str(e), headers={"Retry-After": "1"})
            return
        rid = new_id("chatcmpl" if chat else "cmpl")
        if request.stream:
            self._stream(handle, rid, chat=chat, include_usage=request.include_usage)
        else:
            self._complete(handle, rid, chat=chat)

    def _ungrounded(self) -> bool:
        return self.state.fault is not None and self.state.fault.kind == "ungrounded"

    def _complete(self, handle: RequestHandle, rid: str, *, chat: bool) -> None:
        try:
            for _ in handle.deltas(poll_s=DISCONNECT_POLL_S, abandon=self._client_gone):
                pass
        except GenerationTimeoutError as e:
            self._error(504, str(e), code="timeout")
            return
        except EngineUnavailableError as e:
            self._error(503, str(e))
            return
        except EngineBusyError as e:  # refused after submit (an engine in another process): still a 429
            self._error(429, str(e), code="engine_busy", headers={"Retry-After": str(RETRY_AFTER_BUSY_S)})
            return
        done = handle.finished
        if done is None:  # the client hung up: its request was cancelled
            self.close_connection = True
            return
        build = chat_completion if chat else completion
        body = build(
            rid,
            handle.model,
            UNGROUNDED_TEXT if self._ungrounded() else handle.text,
            finish=done.finish_reason,
            prompt_tokens=done.prompt_tokens,
            completion_tokens=done.completion_tokens,
        )
        self._send_json(200, body)

    def _stream(self, handle: RequestHandle, rid: str, *, chat: bool, include_usage: bool) -> None:
        model = handle.model
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if chat:
                self._event(chat_chunk(rid, model, {"role": "assistant", "content": ""}, None))
            # The ungrounded fault sends the invented sentence a word per generated delta, the rest at the end.
            ungrounded = self._ungrounded()
            pending = [w if i == 0 else " " + w for i, w in enumerate(UNGROUNDED_TEXT.split(" "))] if ungrounded else []

            def send(delta: str) -> None:
                self._event(
                    chat_chunk(rid, model, {"content": delta}, None)
                    if chat
                    else completion_chunk(rid, model, delta, None)
                )

            try:
                for delta in handle.deltas(poll_s=DISCONNECT_POLL_S, abandon=self._client_gone):
                    if not ungrounded:
                        send(delta)
                    elif len(pending) > 1:
                        send(pending.pop(0))
                if ungrounded and handle.finished is not None:
                    send("".join(pending))
            except (GenerationTimeoutError, EngineUnavailableError, EngineBusyError) as e:
                # Headers are sent: the error travels as an event, which the openai client raises.
                status = (
                    504 if isinstance(e, GenerationTimeoutError) else 429 if isinstance(e, EngineBusyError) else 503
                )
                self._event(error_body(status, str(e)))
                self._end_stream()
                return
            done = handle.finished
            if done is None:
                raise _ClientGone
            self._event(
                chat_chunk(rid, model, {}, done.finish_reason)
                if chat
                else completion_chunk(rid, model, "", done.finish_reason)
            )
            if include_usage:
                obj = "chat.completion.chunk" if chat else "text_completion"
                self._event(usage_chunk(rid, model, obj, done.prompt_tokens, done.completion_tokens))
            self._event("[DONE]")
            self._end_stream()
        except (_ClientGone, OSError):  # BrokenPipeError, ConnectionResetError: the client went away
            handle.cancel()
            self.close_connection = True
            self._status = 499  # nginx's "client closed request", for the metrics

    def _event(self, data: Any) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        self._chunk(f"data: {text}\n\n".encode())

    def _chunk(self, payload: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        if self.state.draining:
            self.close_connection = True


# --- the command ------------------------------------------------------------------------


class ServeArgs(BaseModel):
    export: Path
    model_name: str
    host: str = "127.0.0.1"
    port: int = 0
    threads: int | None = None
    max_batch: int = 8
    max_queue: int = 64
    request_timeout: float = 120.0
    drain_timeout: float = 30.0
    dtype: str = "float32"
    device: str = "cpu"
    in_process: bool = False
    fault: str | None = None


def parse_args(argv: list[str] | None = None) -> ServeArgs:
    p = argparse.ArgumentParser(prog="python -m docllm.serving.server", description=__doc__.split("\n")[0])
    p.add_argument("--export", type=Path, required=True, help="a docllm Hugging Face export directory")
    p.add_argument("--model-name", required=True, help="the model version, as clients name it in 'model'")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=0, help="port (0: any free one, printed in the READY line)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--max-batch", type=int, default=8, help="sequences decoded together")
    p.add_argument("--max-queue", type=int, default=64, help="requests that may wait; one more gets a 429")
    p.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request, queue wait included")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds SIGTERM waits for requests in flight")
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=os.environ.get(ENV_DTYPE, "float32"),
        help=f"weights and cache dtype (default: ${ENV_DTYPE}, else float32, exact against the evaluated model)",
    )
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the engine's scheduler in this process (default: a child process of its own, so HTTP "
        "work does not take the interpreter lock from decoding; docllm.serving.engine_process)",
    )
    p.add_argument(
        "--fault",
        default=None,
        help="TESTING AID: errors (every completion answers 500), slow:SECONDS (each waits), "
        "ungrounded (each answers an invented sentence); see docllm.serving.faults",
    )
    ns = p.parse_args(argv)
    if ns.dtype not in DTYPES:  # argparse checks choices only on the command line, not a default
        p.error(f"${ENV_DTYPE} must be one of {sorted(DTYPES)}, got {ns.dtype!r}")
    return ServeArgs.model_validate(vars(ns))


def serve(args: ServeArgs, *, ready: Callable[[str], None] | None = None) -> int:
    """Bind, load the export (503 meanwhile), announce READY, serve until SIGTERM/SIGINT, drain."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fault = parse_fault(args.fault) if args.fault else None
    if fault is not None:
        log.warning("FAULT INJECTION: every completion of %s is faulty (%s)", args.model_name, fault.spec)
    state = ServerState(args.model_name, fault)
    httpd = EngineHTTPServer((args.host, args.port), state)
    threading.Thread(target=httpd.serve_forever, name="docllm-http", daemon=True).start()
    engine_kwargs: dict[str, Any] = {
        "device": args.device,
        "max_batch": args.max_batch,
        "max_queue": args.max_queue,
        "request_timeout_s": args.request_timeout,
        "threads": args.threads,
        "dtype": args.dtype,
    }
    try:
        if args.in_process:
            state.engine = LocalEngine.from_export(args.export, model_name=args.model_name, **engine_kwargs)
        else:
            state.engine = EngineProcess(args.export, model_name=args.model_name, **engine_kwargs)
    except Exception:
        log.exception("cannot load the export %s", args.export)
        httpd.shutdown()
        httpd.server_close()
        return 1
    host, port = httpd.server_address[:2]
    url = f"http://{host!s}:{port}"
    (ready or (lambda u: print(f"READY {u}", flush=True)))(url)
    parent = _supervisor_pid()
    code = 0
    while not stop.wait(0.5):
        if parent is not None and not _alive(parent):
            # The supervisor (docllm up) died, perhaps by SIGKILL: no engine outlives its platform.
            log.warning("supervisor %d is gone: draining", parent)
            break
        if not state.engine.alive():
            # The engine process died (out of memory, say): its requests have failed with 503.
            # Exiting lets the supervisor restart the server, as it restarts one that dies whole.
            log.error("the engine stopped: exiting so that the server is restarted")
            code = 1
            break
    log.info("draining: no new connections; waiting up to %.0f s for requests in flight", args.drain_timeout)
    state.draining = True
    httpd.shutdown()
    httpd.server_close()
    if not state.wait_idle(args.drain_timeout):
        log.warning("drain timeout: requests still in flight are cut off")
    state.engine.close()
    return code


def _supervisor_pid() -> int | None:
    """The supervising process (set by the local deploy target), watched while serving."""
    raw = os.environ.get("DOCLLM_ENGINE_PARENT_PID", "")
    return int(raw) if raw.isdigit() else None


def _alive(pid: int) -> bool:
    if os.getppid() != pid:  # re-parented: the supervisor exited
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return serve(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
