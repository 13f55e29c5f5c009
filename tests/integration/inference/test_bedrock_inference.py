"""BedrockInference: InvokeModel requests on an imported model checked by the Stubber against botocore's
service model (both request formats, both answer shapes), the streamed answer decoded from real
event-stream frames, and each error code mapped to its engine error."""

from __future__ import annotations

import base64
import io
import json
from typing import Any, cast

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from docllm.adapters.aws.bedrock_inference import BedrockInference, ImportedModelNotReadyError
from docllm.adapters.aws.errors import AwsPermanentError
from docllm.exceptions import ConfigurationError
from docllm.ports.inference import GenerationParams
from docllm.serving.exceptions import (
    EngineBusyError,
    EngineUnavailableError,
    NoModelDeployedError,
    PromptTooLongError,
)
from tests.integration.inference.conftest import REGION
from tests.integration.inference.eventstream import StreamResponder, event, exception

ARN = "arn:aws:bedrock:eu-west-1:123456789012:imported-model/abcd1234efgh"


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-runtime", region_name=REGION)


def engine(client: Any, api_format: Any = "openai") -> BedrockInference:
    return BedrockInference(ARN, model_version="v7", context_length=1024, api_format=api_format, client=client)


def body(payload: dict[str, Any]) -> StreamingBody:
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def expected(request: dict[str, Any]) -> dict[str, Any]:
    return {
        "modelId": ARN,
        "body": json.dumps(request).encode(),
        "contentType": "application/json",
        "accept": "application/json",
    }


def test_generate_sends_the_openai_completion_format_by_default(client: Any) -> None:
    params = GenerationParams(max_tokens=3, stop=["\n\n"], seed=1)
    answer = {
        "id": "cmpl-1",
        "object": "text_completion",
        "choices": [{"index": 0, "text": " keeps versions", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9},
    }
    request = {"prompt": "Versioning", "max_tokens": 3, "temperature": 0.0, "top_p": 1.0, "stop": ["\n\n"], "seed": 1}
    with Stubber(client) as stub:
        stub.add_response("invoke_model", {"body": body(answer), "contentType": "application/json"}, expected(request))
        out = engine(client).generate("Versioning", params)
        stub.assert_no_pending_responses()
    assert (out.text, out.finish_reason, out.prompt_tokens, out.completion_tokens, out.model) == (
        " keeps versions",
        "length",
        6,
        3,
        "v7",
    )


def test_generate_in_the_bedrock_completion_format_reads_the_native_answer(client: Any) -> None:
    answer = {
        "generation": " keeps versions",
        "prompt_token_count": 6,
        "generation_token_count": 3,
        "stop_reason": "stop",
    }
    request = {"prompt": "Versioning", "max_gen_len": 3, "temperature": 0.0, "top_p": 1.0}
    with Stubber(client) as stub:
        stub.add_response("invoke_model", {"body": body(answer), "contentType": "application/json"}, expected(request))
        out = engine(client, "bedrock").generate("Versioning", GenerationParams(max_tokens=3))
    assert (out.text, out.finish_reason, out.prompt_tokens, out.completion_tokens) == (" keeps versions", "stop", 6, 3)


def test_the_bedrock_completion_format_refuses_what_it_cannot_express(client: Any) -> None:
    with pytest.raises(ConfigurationError, match="stop"):
        engine(client, "bedrock").generate("x", GenerationParams(stop=["\n"]))


@pytest.mark.parametrize(
    "chunks",
    [
        [
            {"generation": " keeps", "stop_reason": None},
            {"generation": " versions", "stop_reason": "stop", "generation_token_count": 2},
        ],
        [
            {"choices": [{"index": 0, "text": " keeps", "finish_reason": None}]},
            {"choices": [{"index": 0, "text": " versions", "finish_reason": "stop"}]},
        ],
    ],
    ids=["bedrock-completion", "openai-completion"],
)
def test_stream_yields_the_text_of_each_chunk(client: Any, chunks: list[dict[str, Any]]) -> None:
    frames = [
        event(
            "chunk",
            json.dumps({"bytes": base64.b64encode(json.dumps(c).encode()).decode()}).encode(),
            "application/json",
        )
        for c in chunks
    ]
    responder = StreamResponder(frames)
    client.meta.events.register("before-send.bedrock-runtime.InvokeModelWithResponseStream", responder)
    assert list(engine(client).stream("Versioning", GenerationParams(max_tokens=2))) == [" keeps", " versions"]
    [request] = responder.requests
    assert request.url.endswith("/invoke-with-response-stream")
    sent = json.loads(cast(bytes, request.body))
    assert sent == {"prompt": "Versioning", "max_tokens": 2, "temperature": 0.0, "top_p": 1.0}


def test_a_model_stream_error_mid_stream_is_unavailable(client: Any) -> None:
    # botocore keeps only the code and message of an error inside a stream, not its original status.
    frames = [
        event(
            "chunk",
            json.dumps({"bytes": base64.b64encode(b'{"generation": " keeps"}').decode()}).encode(),
            "application/json",
        ),
        exception(
            "modelStreamErrorException",
            json.dumps({"message": "busy", "originalStatusCode": 429, "originalMessage": "queue full"}).encode(),
        ),
    ]
    client.meta.events.register("before-send.bedrock-runtime.InvokeModelWithResponseStream", StreamResponder(frames))
    stream = engine(client).stream("x", GenerationParams())
    assert next(stream) == " keeps"
    with pytest.raises(EngineUnavailableError):
        next(stream)


def test_a_model_scaled_to_zero_is_unavailable_with_a_retry_after(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", service_error_code="ModelNotReadyException", http_status_code=429)
        with pytest.raises(ImportedModelNotReadyError) as info:
            engine(client).generate("x", GenerationParams())
    assert isinstance(info.value, EngineUnavailableError)
    assert info.value.retry_after_s > 0


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ThrottlingException", 429, EngineBusyError),
        ("ServiceQuotaExceededException", 400, EngineBusyError),
        ("ValidationException", 400, PromptTooLongError),
        ("ResourceNotFoundException", 404, NoModelDeployedError),
        ("ModelTimeoutException", 408, EngineUnavailableError),
        ("ServiceUnavailableException", 503, EngineUnavailableError),
        ("AccessDeniedException", 403, AwsPermanentError),
    ],
)
def test_service_errors_map_by_code(client: Any, code: str, status: int, error: type[Exception]) -> None:
    for operation, call in (("invoke_model", "generate"), ("invoke_model_with_response_stream", "stream")):
        with Stubber(client) as stub:
            stub.add_client_error(operation, service_error_code=code, http_status_code=status)
            with pytest.raises(error):
                getattr(engine(client), call)("x", GenerationParams())


def test_a_model_error_carries_the_models_own_status(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error(
            "invoke_model",
            service_error_code="ModelErrorException",
            http_status_code=424,
            modeled_fields={"originalStatusCode": 400, "resourceName": ARN},
        )
        with pytest.raises(PromptTooLongError):
            engine(client).generate("x", GenerationParams())
