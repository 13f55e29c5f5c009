"""SageMakerInference: InvokeEndpoint requests checked by the Stubber against botocore's service model, the
streamed answer decoded from real event-stream frames whose server-sent-event lines are cut across
PayloadParts, and each error code mapped to its engine error."""

from __future__ import annotations

import io
import json
from typing import Any, cast

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from docllm.adapters.aws.errors import AwsPermanentError
from docllm.adapters.aws.sagemaker_inference import SageMakerInference
from docllm.ports.inference import GenerationParams
from docllm.serving.exceptions import (
    EngineBusyError,
    EngineUnavailableError,
    NoModelDeployedError,
    PromptTooLongError,
)
from tests.integration.inference.conftest import REGION
from tests.integration.inference.eventstream import StreamResponder, event, exception

ENDPOINT = "docllm-serve"


@pytest.fixture
def client() -> Any:
    return boto3.client("sagemaker-runtime", region_name=REGION)


def engine(client: Any) -> SageMakerInference:
    return SageMakerInference(ENDPOINT, model_version="v7", context_length=1024, client=client)


def completion(text: str, finish: str = "stop") -> StreamingBody:
    raw = json.dumps(
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "model": "/opt/ml/model",
            "choices": [{"index": 0, "text": text, "finish_reason": finish}],
            "usage": {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9},
        }
    ).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_generate_invokes_the_endpoint_with_an_openai_completion(client: Any) -> None:
    # copy_from is our engine's extension: vLLM gets the same answers as a structured output's choices.
    sources = ["Versioning keeps all: every version.", "It is off"]
    params = GenerationParams(max_tokens=3, stop=["\n"], repetition_penalty=1.1, copy_from=sources)
    body = {
        "prompt": "Versioning",
        "max_tokens": 3,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": ["\n"],
        "repetition_penalty": 1.1,
        "structured_outputs": {
            "choice": ["Versioning keeps all:", "Versioning keeps all: every version.", "It is off"]
        },
    }
    with Stubber(client) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": completion(" keeps versions", "length"), "ContentType": "application/json"},
            {
                "EndpointName": ENDPOINT,
                "Body": json.dumps(body).encode(),
                "ContentType": "application/json",
                "Accept": "application/json",
            },
        )
        out = engine(client).generate("Versioning", params)
        stub.assert_no_pending_responses()
    # The container names its model by path; the answer is the registry version's.
    assert (out.text, out.finish_reason, out.prompt_tokens, out.completion_tokens, out.model) == (
        " keeps versions",
        "length",
        6,
        3,
        "v7",
    )


def test_info_is_the_version_and_context_it_was_given(client: Any) -> None:
    info = engine(client).info()
    assert (info.model, info.context_length) == ("v7", 1024)


def sse(text: str | None = None, *, done: bool = False) -> bytes:
    if done:
        return b"data: [DONE]\n\n"
    chunk = {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": None}]}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()


def test_stream_reassembles_sse_lines_split_across_payload_parts(client: Any) -> None:
    wire = sse(" keeps") + sse(" every ü version") + sse(done=True) + sse("AFTER")
    # Cut mid-line, mid-JSON and inside the two bytes of "ü".
    cut = wire.index("ü".encode()) + 1
    parts = [wire[:5], wire[5:40], wire[40:cut], wire[cut:]]
    responder = StreamResponder([event("PayloadPart", p) for p in parts])
    client.meta.events.register("before-send.sagemaker-runtime.InvokeEndpointWithResponseStream", responder)
    deltas = list(engine(client).stream("Versioning", GenerationParams(max_tokens=3)))
    assert deltas == [" keeps", " every ü version"]
    [request] = responder.requests
    assert request.url.endswith(f"/endpoints/{ENDPOINT}/invocations-response-stream")
    assert json.loads(cast(bytes, request.body))["stream"] is True
    assert request.headers["Content-Type"] == b"application/json"


def test_a_model_stream_error_mid_stream_is_unavailable(client: Any) -> None:
    frames = [
        event("PayloadPart", sse(" keeps")),
        exception("ModelStreamError", json.dumps({"Message": "worker died", "ErrorCode": "ModelStreamError"}).encode()),
    ]
    client.meta.events.register(
        "before-send.sagemaker-runtime.InvokeEndpointWithResponseStream", StreamResponder(frames)
    )
    stream = engine(client).stream("Versioning", GenerationParams())
    assert next(stream) == " keeps"
    with pytest.raises(EngineUnavailableError):
        next(stream)


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, EngineBusyError), (400, PromptTooLongError), (404, NoModelDeployedError), (500, EngineUnavailableError)],
)
def test_the_containers_status_inside_a_model_error_decides(client: Any, status: int, error: type[Exception]) -> None:
    with Stubber(client) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            service_message="Received client error from primary container",
            http_status_code=424,
            modeled_fields={"OriginalStatusCode": status, "OriginalMessage": "vLLM said no"},
        )
        with pytest.raises(error):
            engine(client).generate("x", GenerationParams())


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ModelNotReadyException", 429, EngineUnavailableError),
        ("ServiceUnavailable", 503, EngineUnavailableError),
        ("ThrottlingException", 400, EngineBusyError),
        ("ValidationError", 400, AwsPermanentError),
    ],
)
def test_service_errors_map_by_code(client: Any, code: str, status: int, error: type[Exception]) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("invoke_endpoint_with_response_stream", service_error_code=code, http_status_code=status)
        with pytest.raises(error):
            engine(client).stream("x", GenerationParams())
