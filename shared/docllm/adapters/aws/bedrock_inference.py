"""Bedrock :class:`~docllm.ports.inference.InferenceEngine`: ``InvokeModel`` on a Custom Model Import.

An imported model is invoked by its ARN with a JSON body. Bedrock's guide ("Invoke your imported
model") documents two text formats for imports of Llama-architecture models:

- **OpenAICompletion**, for models imported after 2025-11-11: the OpenAI completions request
  (``prompt``, ``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``, …) answered by a
  ``text_completion`` object (``choices[0].text``, ``finish_reason``, ``usage``). This is the
  default, ``api_format="openai"``: it is the same request as the local engine and SageMaker get,
  so the three targets decode alike (stop strings included).
- **BedrockCompletion**, the format every import accepts (Meta Llama's native Bedrock schema):
  ``{"prompt", "max_gen_len", "temperature", "top_p"}`` answered by ``{"generation",
  "prompt_token_count", "generation_token_count", "stop_reason"}``; ``api_format="bedrock"`` for
  models imported before that date. It has no field for stop strings, ``top_k``, a seed or a
  repetition penalty, so asking for one of them is a :class:`ConfigurationError` rather than a
  silently different answer.

Responses are read in either shape whatever was sent. ``InvokeModelWithResponseStream`` sends the
same body; each ``chunk`` event holds one JSON object of the same two shapes (an SSE ``data:`` line
is accepted too).

Imported models scale to zero: the first request after an idle period gets
``ModelNotReadyException`` while a copy is loaded. The SDK retries it itself (the service model
says up to 5 times, per the client's retry configuration); when it still fails this adapter
raises :class:`ImportedModelNotReadyError`, an :class:`EngineUnavailableError` carrying
``retry_after_s`` for the API to pass on as ``Retry-After``.

Errors, by code (never by message):

- ``ModelNotReadyException`` → :class:`ImportedModelNotReadyError`;
- ``ThrottlingException``, ``ServiceQuotaExceededException`` → :class:`EngineBusyError`;
- ``ValidationException`` → :class:`PromptTooLongError`;
- ``ResourceNotFoundException`` → :class:`NoModelDeployedError`;
- ``ModelErrorException`` → by the model's own status (``originalStatusCode``: 429 busy, 400 too
  long, 404 no model, else unavailable);
- ``ModelStreamErrorException`` (inside a stream botocore keeps only an error's code and message),
  ``ModelTimeoutException``, ``ServiceUnavailableException``, ``InternalServerException``, network
  faults → :class:`EngineUnavailableError`;
- anything else (``AccessDeniedException``) → :mod:`docllm.adapters.aws.errors` (permanent).

``ValidationException`` is taken as the context overflow: the body is built here from validated
parameters and checked against the format in tests, so what varies per request is the prompt
(and ``max_tokens``) against the model's context; Bedrock's message is kept in the error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.exceptions import ClientError

from docllm.adapters.aws.sagemaker_inference import engine_errors
from docllm.adapters.local.inference import (
    SseDecoder,
    completion_body,
    error_for_status,
    finish_reason,
    without_extensions,
)
from docllm.exceptions import ConfigurationError, DocllmError
from docllm.ports.inference import Generation, GenerationParams, InferenceEngine, ModelInfo
from docllm.serving.exceptions import (
    EngineBusyError,
    EngineUnavailableError,
    NoModelDeployedError,
    PromptTooLongError,
)

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

CONTENT_TYPE = "application/json"
ApiFormat = Literal["openai", "bedrock"]

#: What the API suggests to wait after ModelNotReadyException: an imported model's cold start
#: (a copy loaded from zero) takes tens of seconds. Our choice, not a documented figure.
DEFAULT_RETRY_AFTER_S = 30.0

_BUSY_CODES = frozenset({"ThrottlingException", "ServiceQuotaExceededException"})
_UNAVAILABLE_CODES = frozenset(
    {"ModelTimeoutException", "ServiceUnavailableException", "InternalServerException", "ModelStreamErrorException"}
)


class ImportedModelNotReadyError(EngineUnavailableError):
    """The imported model has no copy loaded yet (it scaled to zero): retry after ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: float = DEFAULT_RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def request_body(prompt: str, params: GenerationParams, api_format: ApiFormat = "openai") -> dict[str, Any]:
    """The ``InvokeModel`` body for an imported model, in ``api_format``.

    Examples
    --------
    >>> request_body("Hi", GenerationParams(max_tokens=4), "bedrock")
    {'prompt': 'Hi', 'max_gen_len': 4, 'temperature': 0.0, 'top_p': 1.0}
    """
    if api_format == "openai":
        return completion_body(prompt, params)
    unsupported = [
        name
        for name, off in (("stop", []), ("top_k", None), ("seed", None), ("repetition_penalty", 1.0))
        if getattr(params, name) != off
    ]
    if unsupported:
        raise ConfigurationError(
            f"the BedrockCompletion format has no field for {', '.join(unsupported)}: import the model again "
            "(imports after 2025-11-11 take the OpenAI completions format) or leave them unset"
        )
    return {
        "prompt": prompt,
        "max_gen_len": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }


def parse_response(payload: dict[str, Any], *, model: str) -> Generation:
    """An imported model's answer, in the OpenAI or the BedrockCompletion shape.

    Examples
    --------
    >>> parse_response({"generation": " yes", "prompt_token_count": 3, "generation_token_count": 1,
    ...                 "stop_reason": "length"}, model="v1").finish_reason
    'length'
    """
    if "choices" in payload:
        choices = payload["choices"] or [{}]
        usage = payload.get("usage") or {}
        return Generation(
            text=str(choices[0].get("text") or ""),
            finish_reason=finish_reason(choices[0].get("finish_reason")),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model=model,
        )
    if "generation" in payload:
        return Generation(
            text=str(payload.get("generation") or ""),
            finish_reason=finish_reason(payload.get("stop_reason")),
            prompt_tokens=int(payload.get("prompt_token_count") or 0),
            completion_tokens=int(payload.get("generation_token_count") or 0),
            model=model,
        )
    raise EngineUnavailableError(f"the imported model answered in an unknown shape: {str(payload)[:200]}")


def chunk_texts(payload: bytes) -> Iterator[str]:
    """The text deltas of one stream ``chunk`` (a JSON object of either shape, or SSE lines)."""
    stripped = payload.strip()
    if stripped.startswith(b"data:"):
        datas = SseDecoder().feed(stripped + b"\n\n")
    else:
        datas = [stripped.decode("utf-8")] if stripped else []
    for data in datas:
        if data.strip() == "[DONE]":
            continue
        event = json.loads(data)
        texts = [c.get("text") for c in event.get("choices") or []] if "choices" in event else [event.get("generation")]
        yield from (str(t) for t in texts if t)


class BedrockInference(InferenceEngine):
    """One model imported into Bedrock with Custom Model Import.

    Parameters
    ----------
    model_arn:
        The imported model's ARN (recorded by the deployer when the import job completes).
    model_version:
        The registry version that was imported, reported as :attr:`Generation.model`.
    context_length:
        The model's context length (from the export's config).
    api_format:
        ``"openai"`` (imports after 2025-11-11) or ``"bedrock"`` (BedrockCompletion, every import).
    client:
        A ``bedrock-runtime`` client; one is built on first use when omitted (never at import).

    Examples
    --------
    >>> engine = BedrockInference("arn:aws:bedrock:eu-west-1:123456789012:imported-model/abc",
    ...                           model_version="v7", context_length=1024)  # doctest: +SKIP
    >>> engine.generate("Versioning keeps", GenerationParams(max_tokens=8)).text  # doctest: +SKIP
    """

    def __init__(
        self,
        model_arn: str,
        *,
        model_version: str,
        context_length: int,
        api_format: ApiFormat = "openai",
        client: BedrockRuntimeClient | None = None,
    ) -> None:
        self.model_arn = model_arn
        self.model_version = model_version
        self.context_length = context_length
        self.api_format: ApiFormat = api_format
        self._client = client

    @property
    def client(self) -> BedrockRuntimeClient:
        if self._client is None:
            self._client = boto3.client("bedrock-runtime")
        return self._client

    def info(self) -> ModelInfo:
        return ModelInfo(model=self.model_version, context_length=self.context_length)

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        body = json.dumps(request_body(prompt, without_extensions(params), self.api_format)).encode()
        with _engine_errors(f"Bedrock InvokeModel {self.model_arn}"):
            resp = self.client.invoke_model(
                modelId=self.model_arn, body=body, contentType=CONTENT_TYPE, accept=CONTENT_TYPE
            )
            payload = json.loads(resp["body"].read())
        return parse_response(payload, model=self.model_version)

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        body = json.dumps(request_body(prompt, without_extensions(params), self.api_format)).encode()
        operation = f"Bedrock InvokeModelWithResponseStream {self.model_arn}"
        with _engine_errors(operation):
            resp = self.client.invoke_model_with_response_stream(
                modelId=self.model_arn, body=body, contentType=CONTENT_TYPE, accept=CONTENT_TYPE
            )
        return _deltas(resp["body"], operation)


def _deltas(events: Any, operation: str) -> Iterator[str]:
    with _engine_errors(operation):
        for event in events:
            chunk = event.get("chunk")
            if chunk and chunk.get("bytes"):
                yield from chunk_texts(chunk["bytes"])


def engine_error(error: ClientError) -> DocllmError | None:
    """The engine error for a Bedrock runtime error, or None for the generic translation.

    Examples
    --------
    >>> e = ClientError({"Error": {"Code": "ModelNotReadyException", "Message": "cold"}}, "InvokeModel")
    >>> engine_error(e).retry_after_s
    30.0
    """
    response: dict[str, Any] = dict(error.response)
    code = str(response.get("Error", {}).get("Code") or "")
    # An error inside a stream is named by its member of the event union (modelStreamErrorException).
    code = code[:1].upper() + code[1:]
    message = str(response.get("Error", {}).get("Message") or code)
    if code == "ModelNotReadyException":
        return ImportedModelNotReadyError(f"the imported model is loading a copy (it had scaled to zero): {message}")
    if code in ("ModelErrorException", "ModelStreamErrorException") and response.get("originalStatusCode"):
        return error_for_status(int(response["originalStatusCode"]), {"message": message})
    if code in _BUSY_CODES:
        return EngineBusyError(f"Bedrock is throttling the imported model ({code})")
    if code == "ValidationException":
        return PromptTooLongError(f"the prompt and max_tokens do not fit the model's context: {message}")
    if code == "ResourceNotFoundException":
        return NoModelDeployedError(f"no imported model at this ARN: {message}")
    if code in _UNAVAILABLE_CODES or code == "ModelErrorException":
        return EngineUnavailableError(f"the imported model cannot answer now ({code}): {message}")
    return None


def _engine_errors(operation: str) -> AbstractContextManager[None]:
    return engine_errors(operation, engine_error, "Bedrock")
