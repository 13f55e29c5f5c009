"""The local :class:`~docllm.ports.inference.InferenceEngine`: HTTP to the engine server ``docllm up`` runs.

The engine (``python -m docllm.serving.server``) speaks the OpenAI routes, so this client is a
small OpenAI completions client on the standard library (no ``openai``/``httpx`` dependency in the
answer path): ``GET /v1/models`` for :meth:`LocalEngineClient.info`, ``POST /v1/completions`` for
:meth:`~LocalEngineClient.generate`, the same route with ``"stream": true`` (server-sent events,
ended by ``data: [DONE]``) for :meth:`~LocalEngineClient.stream`.

Which engine answers is read from the state store on **every request** (pk ``endpoints``, sk
``local`` → ``{"url", "model_version", ..., "canary"}``, written by the deployer), never cached: a
version swap records the new engine and then tells the old one to drain, so the request after the
swap already goes to the new one. During a canary rollout the record also names a ``canary``
(``{"url", "model_version", "weight", ...}``): each request goes to it with probability ``weight``
(a fraction, 0 to 1), else to the stable engine, and the answer names the version that generated
it (:attr:`Generation.model`; a stream's iterator carries it as ``.model``), so per-version metrics
and the canary's alarms see the right version.

A swap can still race a request: it reads the old record, then the old engine stops accepting
before the request connects. A refused or reset connection is therefore retried **once**, after
reading the record again, on the *stable* engine recorded then (a canary that was just aborted or
promoted is gone from the record or is the stable one by then); so is a 503 when the record has
meanwhile moved to another URL (an engine that is draining). Nothing else is retried here: a
timeout may mean the engine is still working on the request, and sending it again would only
double the load.

The OpenAI wire helpers below (:func:`completion_body`, :func:`parse_completion`,
:class:`SseDecoder`, :func:`sse_deltas`) are shared with the SageMaker adapter, whose vLLM
container answers the same schema.
"""

from __future__ import annotations

import http.client
import json
import random
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar

from docllm.exceptions import ConfigurationError, DocllmError, PermanentError
from docllm.ports.inference import Generation, GenerationParams, InferenceEngine, ModelInfo
from docllm.ports.state import StateStore
from docllm.serving.copying import copy_choices
from docllm.serving.exceptions import (
    EngineBusyError,
    EngineUnavailableError,
    NoModelDeployedError,
    PromptTooLongError,
)

__all__ = [
    "ENDPOINTS_PK",
    "LOCAL_SK",
    "DeltaStream",
    "LocalEngineClient",
    "SseDecoder",
    "completion_body",
    "error_for_status",
    "finish_reason",
    "parse_completion",
    "sse_deltas",
    "vllm_completion_body",
    "without_extensions",
]

ENDPOINTS_PK = "endpoints"
LOCAL_SK = "local"

#: Fields of a ``/v1/models`` entry that carry the context length: ours, then vLLM's.
_CONTEXT_FIELDS = ("context_length", "max_model_len")

T = TypeVar("T")


# -- the OpenAI completions wire format ---------------------------------------------------------


def completion_body(
    prompt: str, params: GenerationParams, *, model: str | None = None, stream: bool = False
) -> dict[str, Any]:
    """The ``/v1/completions`` request for ``prompt`` and ``params``.

    OpenAI's fields always; vLLM's extra sampling fields (``top_k``, ``repetition_penalty``) and
    docllm's ``copy_from`` only when they differ from "off", so a server that knows only OpenAI's
    schema accepts every request that does not need them.

    Examples
    --------
    >>> completion_body("Hi", GenerationParams(max_tokens=4), model="v1")
    {'prompt': 'Hi', 'max_tokens': 4, 'temperature': 0.0, 'top_p': 1.0, 'model': 'v1'}
    """
    body: dict[str, Any] = {
        "prompt": prompt,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if model is not None:
        body["model"] = model
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if params.top_k is not None:
        body["top_k"] = params.top_k
    if params.repetition_penalty != 1.0:
        body["repetition_penalty"] = params.repetition_penalty
    if params.copy_from:
        body["copy_from"] = list(params.copy_from)
    if stream:
        body["stream"] = True
    return body


def without_extensions(params: GenerationParams) -> GenerationParams:
    """``params`` less docllm's own extensions, for engines that are not ours: they would ignore or
    refuse ``copy_from``. vLLM gets it in its own form (:func:`vllm_completion_body`); on a Bedrock
    imported model the answer path's grounding check alone decides (docs/answers.md)."""
    return params.model_copy(update={"copy_from": None}) if params.copy_from else params


def vllm_completion_body(prompt: str, params: GenerationParams, *, stream: bool = False) -> dict[str, Any]:
    """The ``/v1/completions`` request for vLLM (the SageMaker serving container): ``copy_from``
    becomes vLLM's structured output ``{"choice": [...]}`` over the same answers
    (:func:`~docllm.serving.copying.copy_choices`), so the answer path is copy-constrained there too.

    Examples
    --------
    >>> body = vllm_completion_body("Q", GenerationParams(max_tokens=8, copy_from=["It is on. It is free."]))
    >>> body["structured_outputs"], "copy_from" in body
    ({'choice': ['It is on.', 'It is on. It is free.']}, False)
    """
    body = completion_body(prompt, without_extensions(params), stream=stream)
    if params.copy_from:
        choices = copy_choices(params.copy_from)
        if choices:
            body["structured_outputs"] = {"choice": choices}
    return body


def finish_reason(value: object) -> Literal["stop", "length"]:
    """OpenAI's (or Bedrock's) finish reason as the port's: a token limit is ``length``, anything
    else (end of sequence, a stop string) ``stop``.

    Examples
    --------
    >>> finish_reason("length"), finish_reason("max_tokens"), finish_reason(None)
    ('length', 'length', 'stop')
    """
    return "length" if value in ("length", "max_tokens") else "stop"


def parse_completion(payload: dict[str, Any], *, model: str) -> Generation:
    """A ``text_completion`` response as a :class:`Generation` (``model`` when it names none).

    Examples
    --------
    >>> parse_completion({"choices": [{"text": " yes", "finish_reason": "length"}],
    ...                   "usage": {"prompt_tokens": 3, "completion_tokens": 1}}, model="v1").text
    ' yes'
    """
    choices = payload.get("choices") or []
    if not choices:
        raise EngineUnavailableError(f"the engine answered without a completion: {str(payload)[:200]}")
    choice = choices[0]
    usage = payload.get("usage") or {}
    return Generation(
        text=str(choice.get("text") or ""),
        finish_reason=finish_reason(choice.get("finish_reason")),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        model=str(payload.get("model") or model),
    )


class SseDecoder:
    """Incremental server-sent-events decoder: bytes in, the ``data`` of each complete event out.

    Bytes may be cut anywhere (a SageMaker ``PayloadPart`` ends mid-line, even mid-character), so
    lines are split on ``\\n`` as bytes and decoded only once whole. Comment lines (``:``) and
    other fields (``event:``, ``id:``) are skipped; several ``data:`` lines of one event are joined
    with newlines, as the SSE specification says.

    Examples
    --------
    >>> d = SseDecoder()
    >>> d.feed(b'data: {"a"'), d.feed(b': 1}\\n\\ndata: [DONE]\\n\\n')
    ([], ['{"a": 1}', '[DONE]'])
    """

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        events: list[str] = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
        return events

    def close(self) -> list[str]:
        """Events left when the stream ends without a final blank line."""
        events = self.feed(b"\n\n") if self._pending or self._data else []
        self._pending = b""
        return events


def sse_deltas(chunks: Iterable[bytes], *, on_error: Any = None) -> Iterator[str]:
    """The text deltas of an OpenAI completion stream, until ``data: [DONE]``.

    ``on_error`` builds the exception for an ``{"error": ...}`` event (vLLM reports a failure
    after the 200 that way); by default it is an :class:`EngineUnavailableError`.
    """
    decoder = SseDecoder()
    for chunk in chunks:
        for data in decoder.feed(chunk):
            if data.strip() == "[DONE]":
                return
            yield from _chunk_text(data, on_error)
    for data in decoder.close():
        if data.strip() == "[DONE]":
            return
        yield from _chunk_text(data, on_error)


def _chunk_text(data: str, on_error: Any) -> Iterator[str]:
    event = json.loads(data)
    if "error" in event:
        error = event["error"] if isinstance(event["error"], dict) else {"message": event["error"]}
        raise (on_error or _stream_error)(error)
    for choice in event.get("choices") or []:
        text = choice.get("text") or ""
        if text:
            yield str(text)


def _stream_error(error: dict[str, Any]) -> DocllmError:
    # vLLM puts the HTTP status it would have answered in the error's "code".
    code = error.get("code")
    return error_for_status(code if isinstance(code, int) and 400 <= code <= 599 else 503, error)


def error_for_status(status: int, error: dict[str, Any] | None = None) -> DocllmError:
    """The typed error for an engine's HTTP status (its OpenAI ``error`` object for the message).

    A 400 is taken as the prompt not fitting the context: every other field of the request was
    validated by :class:`GenerationParams` before it was sent, so the prompt is what is left.

    Examples
    --------
    >>> type(error_for_status(429)).__name__, type(error_for_status(400)).__name__
    ('EngineBusyError', 'PromptTooLongError')
    """
    message = str((error or {}).get("message") or f"HTTP {status}")
    if status == 429:
        return EngineBusyError(f"the engine is busy: {message}")
    if status == 400:
        return PromptTooLongError(f"the prompt and max_tokens do not fit the model's context: {message}")
    if status == 404:
        return NoModelDeployedError(f"the engine does not serve the model asked for: {message}")
    if status >= 500:
        return EngineUnavailableError(f"the engine cannot answer (HTTP {status}): {message}")
    return PermanentError(f"the engine refused the request (HTTP {status}): {message}")


# -- the client ---------------------------------------------------------------------------------


class _Retry(Exception):
    """Internal: the request failed in a way that sending it again, to the engine recorded now, may fix.

    ``status`` is None for a connection that failed, 503 for an engine that refused it.
    """

    def __init__(self, error: DocllmError, url: str, status: int | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.url = url
        self.status = status


class DeltaStream(Iterator[str]):
    """The text deltas of one streamed completion, and :attr:`model`, the version generating them."""

    def __init__(self, deltas: Iterator[str], model: str) -> None:
        self._deltas = deltas
        self.model = model

    def __next__(self) -> str:
        return next(self._deltas)

    def close(self) -> None:
        """Stop early: the connection drops, which the engine takes as a cancellation."""
        close = getattr(self._deltas, "close", None)
        if close is not None:
            close()


def route(record: dict[str, Any], draw: float) -> dict[str, Any]:
    """The engine one request goes to: the canary when ``draw`` (uniform in [0, 1)) falls under its
    weight, else the stable engine; as a record of its own (``url``, ``model_version``).

    Examples
    --------
    >>> record = {"url": "http://a", "model_version": "v1",
    ...           "canary": {"url": "http://b", "model_version": "v2", "weight": 0.1}}
    >>> route(record, 0.05)["model_version"], route(record, 0.5)["model_version"]
    ('v2', 'v1')
    """
    canary = record.get("canary")
    if isinstance(canary, dict) and canary.get("url") and draw < float(canary.get("weight") or 0.0):
        return {**canary, "canary": None, "role": "canary"}
    return stable(record)


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """The stable engine of an endpoint record, without its canary."""
    return {**record, "canary": None, "role": "stable"}


class LocalEngineClient(InferenceEngine):
    """The engine recorded for the local target, over HTTP.

    Parameters
    ----------
    state:
        The platform's state store; ``endpoints/local`` is read on every request.
    timeout_s:
        Socket timeout of one request (connect, and each read of the response or the stream).
    rng:
        Draws each request's share of a canary split (a seeded one makes routing repeatable in tests).

    Examples
    --------
    >>> client = LocalEngineClient(platform.state)  # doctest: +SKIP
    >>> client.generate("Versioning keeps", GenerationParams(max_tokens=8)).text  # doctest: +SKIP
    """

    def __init__(self, state: StateStore, *, timeout_s: float = 120, rng: random.Random | None = None) -> None:
        self._state = state
        self.timeout_s = timeout_s
        self._rng = rng or random.Random()
        # No proxy for the engine: an HTTP(S)_PROXY of the environment must not carry loopback traffic.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def endpoint(self) -> dict[str, Any]:
        """The record of the engine serving now (raises :class:`NoModelDeployedError` when none is)."""
        record = self._state.get(ENDPOINTS_PK, LOCAL_SK)
        if not record or not record.get("url"):
            raise NoModelDeployedError("no model is deployed on the local target (docllm deploy V --target local)")
        return record

    def info(self) -> ModelInfo:
        """The stable version's (a canary takes a share of generations, not the endpoint's identity)."""

        def once(record: dict[str, Any]) -> ModelInfo:
            return _model_info(_read_json(self._send(record, "GET", "/v1/models")), record)

        return self._with_retry(once, routed=False)

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        def once(record: dict[str, Any]) -> Generation:
            body = completion_body(prompt, params, model=record.get("model_version"))
            payload = _read_json(self._send(record, "POST", "/v1/completions", body))
            return parse_completion(payload, model=str(record.get("model_version") or ""))

        return self._with_retry(once)

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        # Connect (with the one retry) before the first delta is asked for, so a refused engine
        # fails the call that started the stream, not the consumer's first next().
        def once(record: dict[str, Any]) -> http.client.HTTPResponse:
            body = completion_body(prompt, params, model=record.get("model_version"), stream=True)
            return self._send(record, "POST", "/v1/completions", body)

        served: list[str] = []

        def once_noting(record: dict[str, Any]) -> http.client.HTTPResponse:
            resp = once(record)
            served.append(str(record.get("model_version") or ""))
            return resp

        resp = self._with_retry(once_noting)
        return DeltaStream(self._deltas(resp), served[-1])

    def _deltas(self, resp: http.client.HTTPResponse) -> Iterator[str]:
        # Closing the response (consumer done, or the generator closed early) drops the connection,
        # which the engine takes as a cancellation.
        with resp:
            try:
                yield from sse_deltas(iter(resp.readline, b""))
            except (OSError, http.client.HTTPException) as e:
                raise EngineUnavailableError(f"the engine's stream broke: {e}") from e

    # -- transport ------------------------------------------------------------------------------
    def _with_retry(self, call: Callable[[dict[str, Any]], T], *, routed: bool = True) -> T:
        record = self.endpoint()
        try:
            return call(route(record, self._rng.random()) if routed else stable(record))
        except _Retry as first:
            again = stable(self.endpoint())
            if first.status == 503 and again.get("url") == first.url:
                # A 503 from the engine still recorded: starting or overloaded, not being swapped out.
                raise first.error from first.__cause__
            try:
                return call(again)
            except _Retry as second:
                raise second.error from second.__cause__

    def _send(
        self, record: dict[str, Any], method: str, path: str, body: dict[str, Any] | None = None
    ) -> http.client.HTTPResponse:
        url = str(record["url"]).rstrip("/")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json, text/event-stream"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
        try:
            resp = self._opener.open(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as e:
            with e:
                typed = error_for_status(e.code, _error_object(e.read()))
            if e.code == 503:
                # A draining engine answers 503: worth one more try if the record has moved on.
                raise _Retry(typed, url, 503) from e
            raise typed from e
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError):
                raise EngineUnavailableError(f"the engine at {url} did not answer in {self.timeout_s:g} s") from e
            raise _Retry(EngineUnavailableError(f"the engine at {url} cannot be reached: {reason}"), url) from e
        return resp


def _read_json(resp: http.client.HTTPResponse) -> dict[str, Any]:
    """The JSON body of a 200; a connection lost while reading it is not retried (the engine may
    have done the work), only reported."""
    with resp:
        try:
            payload = json.loads(resp.read())
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise EngineUnavailableError(f"the engine's answer was cut short or unreadable: {e}") from e
    if not isinstance(payload, dict):
        raise EngineUnavailableError(f"the engine answered {str(payload)[:200]} instead of an object")
    return payload


def _error_object(raw: bytes) -> dict[str, Any]:
    """The OpenAI ``{"error": {...}}`` object of an error response, or its text as the message."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return {"message": raw.decode("utf-8", "replace")[:500]}
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            return error
        return {"message": str(error)}
    return {"message": str(payload)[:500]}


def _model_info(payload: dict[str, Any], record: dict[str, Any]) -> ModelInfo:
    """The served model's entry of ``/v1/models`` (the recorded version's, else the first)."""
    entries = [e for e in payload.get("data") or [] if isinstance(e, dict)]
    if not entries:
        raise NoModelDeployedError("the local engine lists no model")
    version = record.get("model_version")
    entry = next((e for e in entries if e.get("id") == version), entries[0])
    for source in (entry, record):
        for name in _CONTEXT_FIELDS:
            if source.get(name):
                return ModelInfo(model=str(entry.get("id") or version), context_length=int(source[name]))
    raise ConfigurationError(
        f"the local engine does not say the context length of {entry.get('id')!r} "
        f"(its /v1/models entry has none of {', '.join(_CONTEXT_FIELDS)})"
    )
