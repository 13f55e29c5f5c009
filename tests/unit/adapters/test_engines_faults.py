"""Engine faults (a testing aid): the spec, ``DOCLLM_ENGINE_FAULTS`` per version, and what a faulty
engine answers — the server runs in this process over a tiny random-weight export, no subprocess."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docllm.adapters.local.engines import LocalEngines
from docllm.answers.ground import check_grounding
from docllm.exceptions import ConfigurationError
from docllm.serving.engine import LocalEngine
from docllm.serving.faults import UNGROUNDED_TEXT, EngineFault, parse_engine_faults, parse_fault
from docllm.serving.server import EngineHTTPServer, ServerState
from tests.unit.serving.conftest import build_export

MODEL = "tiny-v2"


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("errors", EngineFault("errors")),
        ("slow:2.5", EngineFault("slow", 2.5)),
        (" ungrounded ", EngineFault("ungrounded")),
    ],
)
def test_a_fault_spec_parses_and_prints_back(spec: str, fault: EngineFault) -> None:
    assert parse_fault(spec) == fault
    assert parse_fault(fault.spec) == fault


@pytest.mark.parametrize("spec", ["", "boom", "slow", "slow:0", "slow:-1", "slow:nan", "errors:3"])
def test_a_bad_fault_spec_is_refused_with_the_forms_it_takes(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="engine fault"):
        parse_fault(spec)


def test_engine_faults_are_read_per_version_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    assert parse_engine_faults("") == {}
    assert parse_engine_faults("v2=errors; v3 = slow:1,") == {"v2": EngineFault("errors"), "v3": EngineFault("slow", 1)}
    with pytest.raises(ConfigurationError, match="VERSION=SPEC"):
        parse_engine_faults("errors")
    engines = LocalEngines(tmp_path, state=None, objects=None)  # type: ignore[arg-type]
    monkeypatch.setenv("DOCLLM_ENGINE_FAULTS", "tiny-v2=ungrounded")
    assert engines._fault_for("tiny-v2") == EngineFault("ungrounded")
    assert engines._fault_for("tiny-v1") is None
    monkeypatch.delenv("DOCLLM_ENGINE_FAULTS")
    assert engines._fault_for("tiny-v2") is None
    pinned = LocalEngines(tmp_path, state=None, objects=None, faults={"tiny-v1": EngineFault("errors")})  # type: ignore[arg-type]
    assert pinned._fault_for("tiny-v1") == EngineFault("errors")


def test_the_ungrounded_sentence_is_unsupported_by_any_documentation() -> None:
    sources = [
        "Use aws s3api put-bucket-versioning --bucket amzn-s3-demo-bucket to enable versioning. "
        "Each account can have up to 100 buckets; objects can be up to 5 TB (PutObject: 5 GB).",
    ]
    grounding = check_grounding(UNGROUNDED_TEXT, sources)
    assert not grounding.grounded
    assert len(grounding.unsupported) >= 8  # flags, a command, limits with units, an ARN, an action


# --- the server, in this process -------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEngine]:
    export = build_export(tmp_path_factory.mktemp("faulty"))
    e = LocalEngine.from_export(export, model_name=MODEL, max_batch=2, max_queue=4)
    yield e
    e.close()


def serve(engine: LocalEngine, fault: str | None) -> tuple[EngineHTTPServer, str]:
    state = ServerState(MODEL, parse_fault(fault) if fault else None)
    state.engine = engine
    httpd = EngineHTTPServer(("127.0.0.1", 0), state)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def call(url: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def completion(url: str, **extra: Any) -> tuple[int, bytes]:
    return call(url, "/v1/completions", {"model": MODEL, "prompt": "A bucket is", "max_tokens": 6, **extra})


def test_an_errors_engine_is_healthy_and_fails_every_completion_with_a_500(engine: LocalEngine) -> None:
    httpd, url = serve(engine, "errors")
    try:
        status, raw = call(url, "/health")
        assert status == 200 and json.loads(raw) == {"status": "ok", "model": MODEL, "fault": "errors"}
        status, raw = call(url, "/v1/models")
        assert status == 200 and json.loads(raw)["data"][0]["id"] == MODEL
        for extra in ({}, {"stream": True}):
            status, raw = completion(url, **extra)
            error = json.loads(raw)["error"]
            assert status == 500 and error["code"] == "injected_fault" and error["type"] == "server_error"
        status, raw = call(
            url, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
        )
        assert status == 500
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_slow_engine_answers_after_its_delay(engine: LocalEngine) -> None:
    httpd, url = serve(engine, "slow:0.4")
    try:
        t0 = time.monotonic()
        status, raw = completion(url)
        assert status == 200 and json.loads(raw)["choices"][0]["text"]
        assert time.monotonic() - t0 >= 0.4
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_ungrounded_engine_answers_the_invented_sentence_plain_and_streamed(engine: LocalEngine) -> None:
    httpd, url = serve(engine, "ungrounded")
    try:
        status, raw = completion(url)
        assert status == 200 and json.loads(raw)["choices"][0]["text"] == UNGROUNDED_TEXT
        status, raw = completion(url, stream=True)
        assert status == 200
        events = [ln[6:] for ln in raw.decode().splitlines() if ln.startswith("data: ")]
        assert events[-1] == "[DONE]"
        text = "".join(c["choices"][0]["text"] for c in map(json.loads, events[:-1]) if c.get("choices"))
        assert text == UNGROUNDED_TEXT
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_without_a_fault_the_engine_answers_its_own_text(engine: LocalEngine, tmp_path: Path) -> None:
    httpd, url = serve(engine, None)
    try:
        status, raw = call(url, "/health")
        assert json.loads(raw) == {"status": "ok", "model": MODEL}
        status, raw = completion(url)
        assert status == 200 and json.loads(raw)["choices"][0]["text"] != UNGROUNDED_TEXT
    finally:
        httpd.shutdown()
        httpd.server_close()
