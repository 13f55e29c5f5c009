from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from docllm.serving.openai_api import ChatCompletionRequest, CompletionRequest


def completion(**kw: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "v1", "prompt": "Hi", **kw})


def test_openai_defaults_apply_when_fields_are_absent() -> None:
    params = completion().generation_params(prompt_tokens=1, context_length=256)
    assert (params.max_tokens, params.temperature, params.top_p, params.top_k, params.stop) == (16, 1.0, 1.0, None, [])


def test_a_single_stop_string_and_vllm_extensions_are_accepted() -> None:
    params = completion(stop="\n", top_k=-1, repetition_penalty=1.2, seed=3).generation_params(
        prompt_tokens=1, context_length=256
    )
    assert (params.stop, params.top_k, params.repetition_penalty, params.seed) == (["\n"], None, 1.2, 3)


def test_our_copy_from_extension_reaches_the_engine_parameters() -> None:
    params = completion(copy_from=["A bucket holds objects."]).generation_params(prompt_tokens=1, context_length=256)
    assert params.copy_from == ["A bucket holds objects."]
    assert completion(copy_from=[]).generation_params(prompt_tokens=1, context_length=256).copy_from is None


@pytest.mark.parametrize("copy_from", [["x" * 2001], ["a sentence."] * 65])
def test_copy_from_is_bounded_so_no_request_can_stall_the_scheduler(copy_from: list[str]) -> None:
    with pytest.raises(ValidationError):
        completion(copy_from=copy_from)


@pytest.mark.parametrize(
    "field",
    [
        {"n": 2},
        {"echo": True},
        {"logprobs": 1},
        {"best_of": 3},
        {"presence_penalty": 0.5},
        {"logit_bias": {"5": 1.0}},
        {"stop": ["a"] * 9},
        {"temperature": -1},
        {"max_tokens": 0},
        {"top_p": 0},
        {"unknown_field": 1},
        {"prompt": ["one", "two"]},
        {"prompt": []},
    ],
)
def test_unsupported_or_invalid_fields_are_refused(field: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        completion(**field)


def test_a_prompt_may_be_a_list_of_one_string_or_token_ids() -> None:
    assert completion(prompt=["Hi there"]).prompt_input() == "Hi there"
    assert completion(prompt=[1, 2, 3]).prompt_input() == [1, 2, 3]
    assert completion(prompt=[[4, 5]]).prompt_input() == [4, 5]


def chat(**kw: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "v1", "messages": [{"role": "user", "content": "Hi"}], **kw})


def test_chat_defaults_to_the_rest_of_the_context_and_stops_at_the_next_block() -> None:
    params = chat(stop=["END"]).generation_params(prompt_tokens=100, context_length=256)
    assert params.max_tokens == 156
    assert params.stop == ["END", "\n###"]
    assert chat(max_completion_tokens=7).generation_params(prompt_tokens=1, context_length=256).max_tokens == 7


def test_chat_content_parts_are_joined_into_text() -> None:
    req = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
    assert "### Question:\nab\n" in req.prompt_text()


@pytest.mark.parametrize(
    "field",
    [
        {"messages": []},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"logprobs": True},
        {"tools": [{"type": "function"}]},
        {"response_format": {"type": "json_object"}},
    ],
)
def test_unsupported_chat_requests_are_refused(field: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        chat(**field)
