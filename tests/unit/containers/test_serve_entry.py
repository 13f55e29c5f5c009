"""The serving image's entry script, run without Docker: ``serve`` and the SageMaker variables
mapped to vLLM flags, the ``--dry-run`` output, and the /ping and /invocations relay."""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "containers" / "serve" / "serve.py"


def load_serve() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docllm_serve_entry", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serve = load_serve()


def flags(command: list[str]) -> list[str]:
    """The command after ``python -m vllm.entrypoints.openai.api_server``."""
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    return command[3:]


def test_serve_runs_vllm_on_the_sagemaker_model_directory() -> None:
    command = flags(serve.vllm_command(["serve"], {"DOCLLM_MODEL_VERSION": "v7"}))
    assert command == [
        "--model",
        "/opt/ml/model",
        "--served-model-name",
        "v7",
        "--host",
        "127.0.0.1",
        "--port",
        "8081",
    ]


def test_sagemaker_variables_become_vllm_flags() -> None:
    env = {
        "SM_VLLM_MAX_MODEL_LEN": "2048",
        "SM_VLLM_DTYPE": "bfloat16",
        "SM_VLLM_GPU_MEMORY_UTILIZATION": "0.85",
        "SM_VLLM_ENFORCE_EAGER": "true",
        "SM_VLLM_ENABLE_PREFIX_CACHING": "False",
        "SAGEMAKER_REGION": "eu-west-1",
        "PATH": "/usr/bin",
    }
    command = flags(serve.vllm_command(["serve"], env))
    tail = command[8:]
    assert tail == [
        "--dtype",
        "bfloat16",
        "--enforce-eager",
        "--gpu-memory-utilization",
        "0.85",
        "--max-model-len",
        "2048",
    ]


def test_lmi_option_variables_map_with_their_renames_and_lmi_only_ones_are_dropped() -> None:
    env = {
        "OPTION_MAX_MODEL_LEN": "1024",
        "OPTION_TENSOR_PARALLEL_DEGREE": "2",
        "OPTION_MAX_ROLLING_BATCH_SIZE": "32",
        "OPTION_ROLLING_BATCH": "vllm",
        "OPTION_ENTRYPOINT": "djl_python.lmi_vllm",
        "OPTION_MODEL_ID": "s3://elsewhere/",
    }
    tail = flags(serve.vllm_command(["serve"], env))[8:]
    assert tail == ["--max-model-len", "1024", "--max-num-seqs", "32", "--tensor-parallel-size", "2"]


def test_sm_vllm_wins_over_option_for_the_same_flag() -> None:
    tail = flags(serve.vllm_command(["serve"], {"OPTION_MAX_MODEL_LEN": "1024", "SM_VLLM_MAX_MODEL_LEN": "512"}))[8:]
    assert tail == ["--max-model-len", "512"]


def test_extra_arguments_after_serve_are_passed_through_last() -> None:
    command = serve.vllm_command(["serve", "--seed", "1"], {"SM_VLLM_DTYPE": "half"})
    assert command[-4:] == ["--dtype", "half", "--seed", "1"]


@pytest.mark.parametrize("variable", ["SM_VLLM_PORT", "SM_VLLM_MODEL", "OPTION_HOST", "SM_VLLM_SERVED_MODEL_NAME"])
def test_flags_the_script_owns_cannot_come_from_the_environment(variable: str) -> None:
    with pytest.raises(serve.UsageError, match=variable.split("_", 2)[-1].lower().replace("_", "-")):
        serve.vllm_command(["serve"], {variable: "x"})


def test_other_commands_are_refused() -> None:
    with pytest.raises(serve.UsageError, match="train"):
        serve.vllm_command(["train"], {})


def test_dry_run_prints_the_command_and_exits(tmp_path: Path) -> None:
    env = {"SM_VLLM_MAX_MODEL_LEN": "1024", "DOCLLM_MODEL_VERSION": "v7", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=tmp_path,
    )
    printed = shlex.split(done.stdout)
    assert printed[3:] == flags(serve.vllm_command(["serve"], env))
    assert printed[-2:] == ["--max-model-len", "1024"]


def test_bad_usage_exits_2_with_a_message() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "serve"],
        env={"SM_VLLM_PORT": "9000"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "port" in done.stderr


# --- the relay, against a stand-in for vLLM


class FakeVllm(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str, Any]]] = []

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, None))
        self._send(200 if self.path == "/health" else 404, b"")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("POST", self.path, body))
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'data: {"choices":[{"text":"a"}]}\n\n', b"data: [DONE]\n\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self._send(200, json.dumps({"route": self.path, "model": body.get("model")}).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _start(server: ThreadingHTTPServer) -> None:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def adapter(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), FakeVllm)
    _start(upstream)
    monkeypatch.setattr(serve, "VLLM_PORT", upstream.server_address[1])
    monkeypatch.setattr(serve.SageMakerHandler, "model_name", "v7")
    monkeypatch.setattr(serve.SageMakerHandler, "log_message", lambda *a: None)
    front = ThreadingHTTPServer(("127.0.0.1", 0), serve.SageMakerHandler)
    _start(front)
    FakeVllm.seen = []
    yield f"http://127.0.0.1:{front.server_address[1]}"
    front.shutdown()
    upstream.shutdown()


def post(url: str, payload: dict[str, Any]) -> bytes:
    req = Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urlopen(req, timeout=10) as resp:
        return resp.read()


def test_ping_answers_from_vllm_health(adapter: str) -> None:
    with urlopen(adapter + "/ping", timeout=10) as resp:
        assert resp.status == 200
    assert FakeVllm.seen == [("GET", "/health", None)]


def test_invocations_with_messages_go_to_chat_and_others_to_completions(adapter: str) -> None:
    chat = json.loads(post(adapter + "/invocations", {"messages": [{"role": "user", "content": "hi"}]}))
    completion = json.loads(post(adapter + "/invocations", {"prompt": "hi", "model": "v7"}))
    assert chat == {"route": "/v1/chat/completions", "model": "v7"}  # model filled in when left out
    assert completion == {"route": "/v1/completions", "model": "v7"}


def test_streamed_invocation_is_relayed_whole(adapter: str) -> None:
    body = post(adapter + "/invocations", {"prompt": "hi", "stream": True})
    assert body.endswith(b"data: [DONE]\n\n") and b'"text":"a"' in body


def test_ping_is_503_while_vllm_is_not_listening(adapter: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "VLLM_PORT", 1)  # nothing listens there
    with pytest.raises(HTTPError) as caught:
        urlopen(adapter + "/ping", timeout=10)
    assert caught.value.code == 503


def test_other_routes_are_404(adapter: str) -> None:
    with pytest.raises(HTTPError) as caught:
        urlopen(adapter + "/v1/models", timeout=10)
    assert caught.value.code == 404
