#!/usr/bin/env python3
"""SageMaker entry of the docllm serving image: vLLM behind SageMaker's ``/ping`` and ``/invocations``.

SageMaker starts the container as ``docker run <image> serve`` and sends
``GET /ping`` and ``POST /invocations`` to port 8080. vLLM's OpenAI server
speaks ``/health``, ``/v1/completions`` and ``/v1/chat/completions``. This
script (standard library only: it runs in the vLLM base image as is)

1. maps the environment to vLLM flags: ``SM_VLLM_FOO_BAR=x`` → ``--foo-bar x``
   (the convention of vLLM's own SageMaker entry point) and the LMI names
   ``OPTION_*`` (``OPTION_MAX_MODEL_LEN``, ``OPTION_TENSOR_PARALLEL_DEGREE`` …),
   with ``SM_VLLM_*`` winning when both name one flag; ``true`` is a bare flag,
   ``false`` leaves it out;
2. starts vLLM on 127.0.0.1:8081 over ``/opt/ml/model`` (where SageMaker puts
   the model's ``ModelDataSource``), serving the model under the name in
   ``DOCLLM_MODEL_VERSION`` (a LoRA model: the base under ``DOCLLM_BASE_MODEL_NAME``
   and the adapter, ``SM_VLLM_LORA_MODULES``, under the version's name);
3. answers on 8080: ``/ping`` → vLLM ``/health`` (200 only once the weights are
   loaded), ``/invocations`` → ``/v1/chat/completions`` when the JSON body has
   ``messages``, else ``/v1/completions``; responses, streamed ones included
   (``"stream": true`` for ``InvokeEndpointWithResponseStream``), are relayed
   chunk by chunk. When vLLM exits, the container exits with its status.

Why not vLLM's own port: recent vLLM releases add ``/ping`` and ``/invocations``
themselves, but how ``/invocations`` picks the route has changed between
releases; this adapter pins the contract our inference adapter relies on,
whatever the base image's version.

Run::

    python serve.py serve              # what SageMaker runs
    python serve.py --dry-run serve    # print the vLLM command and exit
    SM_VLLM_MAX_MODEL_LEN=1024 python serve.py --dry-run
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_DIR = "/opt/ml/model"
PUBLIC_PORT = 8080
VLLM_HOST = "127.0.0.1"
VLLM_PORT = 8081
MODEL_VERSION_ENV = "DOCLLM_MODEL_VERSION"
#: Set for a LoRA model: the base's served name; requests naming no model get the version (the adapter).
BASE_NAME_ENV = "DOCLLM_BASE_MODEL_NAME"

#: LMI's names that differ from vLLM's flag for the same thing.
LMI_RENAMES = {
    "TENSOR_PARALLEL_DEGREE": "tensor-parallel-size",
    "PIPELINE_PARALLEL_DEGREE": "pipeline-parallel-size",
    "MAX_ROLLING_BATCH_SIZE": "max-num-seqs",
    "MAX_ROLLING_BATCH_PREFILL_TOKENS": "max-num-batched-tokens",
}
#: LMI settings that choose LMI's own machinery; vLLM has no such flag and would refuse them.
LMI_ONLY = frozenset({"ROLLING_BATCH", "ENTRYPOINT", "ASYNC_MODE", "MODEL_ID", "ENGINE", "MODEL_LOADING_TIMEOUT"})
#: Flags this script owns: where the model is, where vLLM listens, what it is called.
RESERVED = frozenset({"model", "host", "port", "served-model-name"})


class UsageError(ValueError):
    """Bad arguments or environment: the container exits with a message instead of starting."""


def _flag(name: str) -> str:
    return name.lower().replace("_", "-")


def _flags_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Flag name → value, OPTION_* first so that SM_VLLM_* overrides it."""
    flags: dict[str, str] = {}
    for key in sorted(environ):
        if key.startswith("OPTION_"):
            name = key[len("OPTION_") :]
            if name in LMI_ONLY:
                continue
            flags[LMI_RENAMES.get(name) or _flag(name)] = environ[key]
    for key in sorted(environ):
        if key.startswith("SM_VLLM_"):
            flags[_flag(key[len("SM_VLLM_") :])] = environ[key]
    clash = sorted(RESERVED & flags.keys())
    if clash:
        raise UsageError(f"these vLLM flags are set by the entry script and cannot come from the environment: {clash}")
    return flags


def vllm_command(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The vLLM command for the container's arguments and environment.

    ``argv`` is what follows the script name: ``serve`` (SageMaker), optionally
    followed by extra vLLM flags, passed through last.

    Examples
    --------
    >>> vllm_command(["serve"], {"SM_VLLM_MAX_MODEL_LEN": "1024", "DOCLLM_MODEL_VERSION": "v7"})[3:]
    ['--model', '/opt/ml/model', '--served-model-name', 'v7', '--host', '127.0.0.1', '--port', '8081', \
'--max-model-len', '1024']
    """
    args = list(argv)
    if args and args[0] == "serve":
        args = args[1:]
    elif args and not args[0].startswith("--"):
        raise UsageError(f"unknown command {args[0]!r}: this image only serves (SageMaker runs it with 'serve')")
    command = [
        sys.executable or "python3",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        MODEL_DIR,
        "--served-model-name",
        # A LoRA model: the base under its own name, the adapter (--lora-modules) under the version's.
        environ.get(BASE_NAME_ENV) or environ.get(MODEL_VERSION_ENV) or "model",
        "--host",
        VLLM_HOST,
        "--port",
        str(VLLM_PORT),
    ]
    for name, value in _flags_from_env(environ).items():
        lowered = value.strip().lower()
        if lowered == "true":
            command.append(f"--{name}")
        elif lowered != "false":
            command += [f"--{name}", value]
    return command + args


# --- the SageMaker adapter -------------------------------------------------------------

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"})


def invocation_path(body: bytes) -> str:
    """The vLLM route of an ``/invocations`` body: chat when it carries ``messages``.

    Examples
    --------
    >>> invocation_path(b'{"messages": [{"role": "user", "content": "hi"}]}')
    '/v1/chat/completions'
    >>> invocation_path(b'{"prompt": "hi"}')
    '/v1/completions'
    """
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return "/v1/completions"  # vLLM answers the malformed body with its own 400
    return "/v1/chat/completions" if isinstance(payload, dict) and "messages" in payload else "/v1/completions"


class SageMakerHandler(BaseHTTPRequestHandler):
    """``/ping`` and ``/invocations`` on the public port, relayed to vLLM on localhost."""

    protocol_version = "HTTP/1.1"
    model_name = "model"

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/ping":
            self._relay("GET", "/health", b"")
        else:
            self._plain(404, b"not found\n")

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/invocations":
            self._plain(404, b"not found\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._relay("POST", invocation_path(body), self._with_model(body))

    def _with_model(self, body: bytes) -> bytes:
        """Fill in ``model`` when the caller left it out (vLLM requires it to match the served name)."""
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return body
        if isinstance(payload, dict) and not payload.get("model"):
            payload["model"] = self.model_name
            return json.dumps(payload).encode()
        return body

    def _relay(self, method: str, path: str, body: bytes) -> None:
        conn = http.client.HTTPConnection(VLLM_HOST, VLLM_PORT, timeout=3600)
        try:
            headers = {"Content-Type": self.headers.get("Content-Type") or "application/json"}
            conn.request(method, path, body=body if method == "POST" else None, headers=headers)
            upstream = conn.getresponse()
        except OSError:
            # vLLM not listening yet (loading weights) or gone: not healthy, not servable.
            self._plain(503, b"model server not ready\n")
            conn.close()
            return
        try:
            self.send_response(upstream.status)
            for key, value in upstream.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := upstream.read1(65536):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; closing the upstream connection cancels vLLM's request
        finally:
            conn.close()

    def _plain(self, status: int, text: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: object) -> None:
        if "/ping" not in self.requestline:  # SageMaker pings every few seconds
            super().log_message(format, *args)


def serve(command: list[str], environ: Mapping[str, str]) -> int:
    """Start vLLM, serve the adapter until vLLM exits, return vLLM's exit status."""
    vllm = subprocess.Popen(command)

    def stop(signum: int, _frame: object) -> None:
        vllm.send_signal(signum)  # SageMaker stops the container with SIGTERM: let vLLM drain

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    SageMakerHandler.model_name = environ.get(MODEL_VERSION_ENV) or "model"
    port = int(environ.get("SAGEMAKER_BIND_TO_PORT") or PUBLIC_PORT)
    server = ThreadingHTTPServer(("0.0.0.0", port), SageMakerHandler)  # SageMaker calls from outside the container
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while vllm.poll() is None:
        time.sleep(1)
    server.shutdown()
    return vllm.returncode


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    dry_run = "--dry-run" in args
    args = [a for a in args if a != "--dry-run"]
    try:
        command = vllm_command(args, env)
    except UsageError as e:
        print(f"serve.py: {e}", file=sys.stderr)
        return 2
    if dry_run:
        print(shlex.join(command))
        return 0
    print(f"serve.py: starting {shlex.join(command)}", file=sys.stderr, flush=True)
    return serve(command, env)


if __name__ == "__main__":
    sys.exit(main())
