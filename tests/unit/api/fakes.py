"""A platform for the answer route's tests: the tiny index, a fake engine, and the real local state
and metrics stores (so the metrics a request emits are read back from where the alarms read them);
the route's isolation from other tests, and a ``POST /v1/ask`` through the Lambda handler."""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from docllm.adapters.local.metrics import SqliteMetrics
from docllm.adapters.local.state import SqliteStateStore
from docllm.exceptions import NotFoundError
from docllm.ports.metrics import MetricPoint
from docllm.runtime.http import ApiServer, Request, proxy_event, start_api_server
from docllm.runtime.template import FunctionSpec, HttpRoute
from docllm.settings import Settings
from tests.conftest import REPO
from tests.unit.answers.fakes import FakeEngine, small_index

MODEL = "tiny-s3-v1"
FAMILY = "tiny-s3"
EXPORT = "s3://artifacts/models/tiny-s3-v1/export/"
QUESTION = "How do I enable versioning on a bucket?"
GOOD = "Open the Amazon S3 console, choose the bucket, choose Properties, and under Bucket Versioning choose Edit."


def isolate_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    """``/v1/ask`` as a test of its own sees it: no tracing, the default rate limit, a fresh limiter."""
    from docllm.api import routes

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.delenv("DOCLLM_ASK_RATE", raising=False)
    monkeypatch.delenv("DOCLLM_ASK_BURST", raising=False)
    routes.ask_limiter.cache_clear()


def ask_lambda(body: Any, *, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """``POST /v1/ask`` with ``body`` (JSON, or bytes as they are) through the API function's Lambda
    handler, in a Lambda context (no response stream): the handler's result."""
    from tests.unit.api.test_error_responses import HANDLER, Context

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = Request(
        "POST", "/v1/ask", {"host": "api", "content-type": "application/json", **(headers or {})}, raw, "127.0.0.1"
    )
    return HANDLER(proxy_event("POST", "/v1/ask", request), Context())  # type: ignore[no-any-return]


class Failing(FakeEngine):
    """An engine whose ``info`` (the route's first call to it) raises ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(GOOD)
        self.error = error

    def info(self):  # type: ignore[no-untyped-def]
        raise self.error


class Objects:
    """The one object-store call the answer path's metrics make: ``get``."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.gets = 0

    def get(self, bucket: str, key: str, *, version_id: str | None = None) -> bytes:
        self.gets += 1
        try:
            return self.files[(bucket, key)]
        except KeyError:
            raise NotFoundError(f"s3://{bucket}/{key}") from None


class Platform:
    """What ``routes.build_platform()`` returns in these tests."""

    local = True

    def __init__(self, tmp_path: Path, engine: Any, *, tokenizer: bytes | None = None) -> None:
        self.data_dir = tmp_path
        self.search_reader = small_index(tmp_path / "index")
        self.inference = engine
        self.settings = Settings.from_env({"DOCLLM_DATA_DIR": str(tmp_path)})
        self.state = SqliteStateStore(tmp_path / "state.db")
        self.metrics = SqliteMetrics(tmp_path / "metrics.db")
        self.objects = Objects()
        self.state.put("models", MODEL, {"version": MODEL, "family": FAMILY, "export_uri": EXPORT})
        if tokenizer is not None:
            self.objects.files[("artifacts", "models/tiny-s3-v1/export/tokenizer.model")] = tokenizer

    def points(self, name: str) -> list[MetricPoint]:
        return self.metrics.query(name)  # type: ignore[attr-defined]

    def values(self, name: str, **dims: str) -> list[float]:
        """The values of ``name`` whose dimensions include ``dims`` (the sink may add ``service``)."""
        return [p.value for p in self.points(name) if set(dims.items()) <= set(p.dimensions)]


@cache
def tokenizer_model() -> bytes:
    """A tiny SentencePiece model with byte fallback, trained on English words only."""
    import sentencepiece as spm

    words = "open the bucket choose properties enable versioning object storage lifecycle rules role policy"
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([words] * 50),
        model_writer=buf,
        vocab_size=320,
        hard_vocab_limit=False,
        byte_fallback=True,
        character_coverage=1.0,
        minloglevel=2,
    )
    return buf.getvalue()


ASK = FunctionSpec("Api", "x/", "app.handler", 30, {}, http_routes=(HttpRoute("POST", "/v1/ask"),))


@dataclass
class _Runtime:
    host: str = "127.0.0.1"
    port: int = 0
    auth: bool = False


def api_handler() -> Any:
    """``services/api/app.py``'s handler (its module defines ``make_handler``: a resolver per worker)."""
    spec = importlib.util.spec_from_file_location("docllm_test_api_app_fakes", REPO / "services/api/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


@contextmanager
def serving(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, engine: Any) -> Iterator[tuple[ApiServer, Platform]]:
    """The API function behind the local API front on a free port, over a :class:`Platform` with ``engine``."""
    from docllm.api import routes

    p = Platform(tmp_path, engine)
    monkeypatch.setattr(routes, "build_platform", lambda: p)
    server = start_api_server(_Runtime(), ASK, api_handler(), workers=2, backlog=2)  # type: ignore[arg-type]
    try:
        yield server, p
    finally:
        server.shutdown(grace_s=2)
