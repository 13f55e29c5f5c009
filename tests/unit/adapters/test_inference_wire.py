"""The wire helpers of the inference adapters: OpenAI completion bodies, server-sent events cut
anywhere, finish reasons, statuses, and Bedrock's two request formats."""

from __future__ import annotations

import pytest

from docllm.adapters.aws.bedrock_inference import chunk_texts, request_body
from docllm.adapters.local.inference import (
    SseDecoder,
    completion_body,
    error_for_status,
    finish_reason,
    sse_deltas,
    vllm_completion_body,
    without_extensions,
)
from docllm.exceptions import PermanentError
from docllm.ports.inference import GenerationParams
from docllm.serving.exceptions import EngineUnavailableError


def test_completion_body_leaves_out_sampling_extras_that_are_off() -> None:
    body = completion_body("p", GenerationParams())
    assert body == {"prompt": "p", "max_tokens": 64, "temperature": 0.0, "top_p": 1.0}


def test_completion_body_carries_every_extra_that_is_set() -> None:
    params = GenerationParams(top_k=4, repetition_penalty=1.2, stop=["a"], seed=3)
    body = completion_body("p", params, model="v2", stream=True)
    assert body["top_k"] == 4 and body["repetition_penalty"] == 1.2 and body["stop"] == ["a"] and body["seed"] == 3
    assert body["model"] == "v2" and body["stream"] is True


def test_completion_body_carries_copy_from_and_only_our_engine_gets_it() -> None:
    params = GenerationParams(copy_from=["Versioning keeps every version."])
    assert completion_body("p", params)["copy_from"] == ["Versioning keeps every version."]
    assert "copy_from" not in completion_body("p", without_extensions(params))
    assert without_extensions(GenerationParams()) == GenerationParams()


def test_vllm_gets_copy_from_as_choices_and_nothing_when_there_is_none() -> None:
    params = GenerationParams(copy_from=["Versioning is off; enable it.", "  "])
    body = vllm_completion_body("p", params, stream=True)
    assert body["structured_outputs"] == {"choice": ["Versioning is off;", "Versioning is off; enable it."]}
    assert "copy_from" not in body and body["stream"] is True
    assert "structured_outputs" not in vllm_completion_body("p", GenerationParams(copy_from=[" "]))
    assert vllm_completion_body("p", GenerationParams()) == completion_body("p", GenerationParams())


def test_sse_decoder_handles_any_cut_crlf_comments_and_multiline_data() -> None:
    wire = b': hello\r\n\r\nevent: x\r\ndata: one\r\ndata: two\r\n\r\ndata:{"k": "\xc3\xbc"}\n\n'
    for size in (1, 2, 3, 7, len(wire)):
        decoder = SseDecoder()
        events = [e for i in range(0, len(wire), size) for e in decoder.feed(wire[i : i + size])]
        assert events == ["one\ntwo", '{"k": "ü"}']


def test_sse_decoder_flushes_an_event_without_a_final_blank_line() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: tail") == []
    assert decoder.close() == ["tail"]


def test_sse_deltas_stop_at_done_and_skip_empty_text() -> None:
    wire = [b'data: {"choices": [{"text": "a"}]}\n\ndata: {"choices": [{"text": ""}]}\n\n', b"data: [DONE]\n\n"]
    assert list(sse_deltas([*wire, b'data: {"choices": [{"text": "late"}]}\n\n'])) == ["a"]


def test_an_error_event_without_a_status_is_unavailable() -> None:
    with pytest.raises(EngineUnavailableError):
        list(sse_deltas([b'data: {"error": "engine stopped"}\n\n']))


@pytest.mark.parametrize(
    ("value", "expected"), [("length", "length"), ("stop", "stop"), ("eos", "stop"), (None, "stop")]
)
def test_finish_reason(value: object, expected: str) -> None:
    assert finish_reason(value) == expected


def test_an_unexpected_client_status_is_permanent() -> None:
    assert isinstance(error_for_status(401), PermanentError)


def test_bedrock_request_formats() -> None:
    params = GenerationParams(max_tokens=5, temperature=0.5, top_p=0.9)
    assert request_body("p", params, "bedrock") == {"prompt": "p", "max_gen_len": 5, "temperature": 0.5, "top_p": 0.9}
    assert request_body("p", params, "openai") == {"prompt": "p", "max_tokens": 5, "temperature": 0.5, "top_p": 0.9}


def test_bedrock_chunks_may_be_sse_lines() -> None:
    assert list(chunk_texts(b'data: {"choices": [{"text": "x"}]}\n\n')) == ["x"]
    assert list(chunk_texts(b"data: [DONE]")) == []
