"""SageMaker :class:`~docllm.ports.inference.InferenceEngine`: a real-time endpoint on the vLLM container.

The container (``containers/serve/``) runs vLLM's OpenAI server behind SageMaker's contract:
``POST /invocations`` on port 8080 is the completions route. vLLM's own SageMaker integration
(``vllm.entrypoints.serve.sagemaker``, used by its ``sagemaker-entrypoint.sh`` image) picks the
handler for ``/invocations`` from the shape of the body, and our entry script maps it to
``/v1/completions`` outright; either way the body is the OpenAI completions request
(:func:`~docllm.adapters.local.inference.vllm_completion_body`: a copy-constrained request's
``copy_from`` goes as vLLM's structured output ``{"choice": [...]}``) and the answer a
``text_completion`` object, exactly as on the local engine. The request names no ``model``: the container serves one,
and its served name (a path under ``/opt/ml/model``) is not the registry's version, which the
adapter is told instead.

``InvokeEndpoint`` carries one completion; ``InvokeEndpointWithResponseStream`` the same request
with ``"stream": true``, whose server-sent events SageMaker relays as ``PayloadPart`` byte chunks
cut wherever the container flushed, so lines are reassembled across parts.

Errors, by code (never by message):

- ``ModelError`` (the container answered an error status; SageMaker passes it on as
  ``OriginalStatusCode``) → by that status: 429 :class:`EngineBusyError`, 400
  :class:`PromptTooLongError` (vLLM's answer to a prompt over the context), 404
  :class:`NoModelDeployedError`, else :class:`EngineUnavailableError`;
- ``ThrottlingException`` (account invocation limits) → :class:`EngineBusyError`;
- ``ModelNotReadyException``, ``ServiceUnavailable``, ``InternalFailure``,
  ``InternalDependencyException``, ``ModelStreamError``, ``InternalStreamFailure``, network faults →
  :class:`EngineUnavailableError`;
- anything else → :mod:`docllm.adapters.aws.errors` (``ValidationError`` — an unknown endpoint, a
  payload over the limit — and ``AccessDenied`` are permanent: the same call fails again).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from docllm.adapters.aws.errors import aws_errors
from docllm.adapters.local.inference import (
    error_for_status,
    parse_completion,
    sse_deltas,
    vllm_completion_body,
)
from docllm.exceptions import DocllmError
from docllm.ports.inference import Generation, GenerationParams, InferenceEngine, ModelInfo
from docllm.serving.exceptions import EngineBusyError, EngineUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

CONTENT_TYPE = "application/json"

#: Faults before or during a response: the endpoint is unreachable, not the request wrong.
NETWORK_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)

_UNAVAILABLE_CODES = frozenset(
    {
        "ModelNotReadyException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalDependencyException",
        "ModelStreamError",
        "InternalStreamFailure",
    }
)
_BUSY_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException"})


class SageMakerInference(InferenceEngine):
    """One SageMaker real-time endpoint serving one model version.

    Parameters
    ----------
    endpoint_name:
        The endpoint (the deployer records it with the version it serves).
    model_version:
        The registry version the endpoint serves, reported as :attr:`Generation.model`.
    context_length:
        The model's context length (from the export's config; the endpoint does not say).
    client:
        A ``sagemaker-runtime`` client; one is built on first use when omitted (never at import).

    Examples
    --------
    >>> engine = SageMakerInference("docllm-serve", model_version="v7", context_length=1024)  # doctest: +SKIP
    >>> engine.generate("Versioning keeps", GenerationParams(max_tokens=8)).text  # doctest: +SKIP
    """

    def __init__(
        self,
        endpoint_name: str,
        *,
        model_version: str,
        context_length: int,
        client: SageMakerRuntimeClient | None = None,
    ) -> None:
        self.endpoint_name = endpoint_name
        self.model_version = model_version
        self.context_length = context_length
        self._client = client

    @property
    def client(self) -> SageMakerRuntimeClient:
        if self._client is None:
            self._client = boto3.client("sagemaker-runtime")
        return self._client

    def info(self) -> ModelInfo:
        return ModelInfo(model=self.model_version, context_length=self.context_length)

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        body = json.dumps(vllm_completion_body(prompt, params)).encode()
        with _engine_errors(f"SageMaker InvokeEndpoint {self.endpoint_name}"):
            resp = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name, Body=body, ContentType=CONTENT_TYPE, Accept=CONTENT_TYPE
            )
            payload = json.loads(resp["Body"].read())
        # The container names its model by path; the answer is credited to the registry's version.
        return parse_completion(payload, model=self.model_version).model_copy(update={"model": self.model_version})

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        body = json.dumps(vllm_completion_body(prompt, params, stream=True)).encode()
        operation = f"SageMaker InvokeEndpointWithResponseStream {self.endpoint_name}"
        with _engine_errors(operation):
            resp = self.client.invoke_endpoint_with_response_stream(
                EndpointName=self.endpoint_name, Body=body, ContentType=CONTENT_TYPE, Accept="text/event-stream"
            )
        return _deltas(resp["Body"], operation)


def _deltas(events: Any, operation: str) -> Iterator[str]:
    # Errors met while iterating (a ModelStreamError event, a dropped connection) are translated
    # like those of the call itself.
    with _engine_errors(operation):
        yield from sse_deltas(_payload_bytes(events))


def _payload_bytes(events: Any) -> Iterator[bytes]:
    for event in events:
        part = event.get("PayloadPart")
        if part and part.get("Bytes"):
            yield part["Bytes"]


def engine_error(error: ClientError) -> DocllmError | None:
    """The engine error for a SageMaker runtime error, or None for the generic translation.

    Examples
    --------
    >>> e = ClientError({"Error": {"Code": "ModelError"}, "OriginalStatusCode": 429}, "InvokeEndpoint")
    >>> type(engine_error(e)).__name__
    'EngineBusyError'
    """
    code = str(error.response.get("Error", {}).get("Code") or "")
    if code == "ModelError":
        # The container answered with an error status; SageMaker passes it on beside its own 424.
        response: dict[str, Any] = dict(error.response)
        status = response.get("OriginalStatusCode")
        message = response.get("OriginalMessage") or response.get("Error", {}).get("Message")
        return error_for_status(int(status) if status else 500, {"message": message})
    if code in _BUSY_CODES:
        return EngineBusyError(f"the SageMaker endpoint is throttled ({code})")
    if code in _UNAVAILABLE_CODES:
        return EngineUnavailableError(f"the SageMaker endpoint cannot answer now ({code})")
    return None


@contextmanager
def engine_errors(
    operation: str, classify: Callable[[ClientError], DocllmError | None], unreachable: str
) -> Iterator[None]:
    """Engine errors for what ``classify`` knows, :func:`aws_errors` for the rest (shared with Bedrock)."""
    with aws_errors(operation):
        try:
            yield
        except ClientError as e:
            typed = classify(e)
            if typed is None:
                raise
            raise typed from e
        except NETWORK_ERRORS as e:
            raise EngineUnavailableError(f"{operation}: {unreachable} cannot be reached: {e}") from e


def _engine_errors(operation: str) -> AbstractContextManager[None]:
    return engine_errors(operation, engine_error, "the endpoint")
