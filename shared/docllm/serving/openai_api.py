"""The OpenAI wire format the engine server speaks: request models and response objects.

Requests are validated by pydantic; a field OpenAI defines but the engine does not support
(``n`` > 1, ``echo``, ``logprobs``, presence/frequency penalties, ``logit_bias``, tools) is refused
with a 400 naming it rather than ignored, so a client never gets silently different behaviour.
``top_k`` and ``repetition_penalty`` are accepted as vLLM accepts them (extra body fields).
Defaults follow OpenAI's: ``temperature`` 1, ``max_tokens`` 16 for completions and the rest
of the context for chat.

Responses are plain dicts in OpenAI's shapes: ``text_completion`` and ``chat.completion``
objects, their streaming chunks (``chat.completion.chunk``), and the error body
``{"error": {"message", "type", "param", "code"}}``.

Example
-------
>>> req = CompletionRequest.model_validate({"model": "v1", "prompt": "Hi", "max_tokens": 4, "temperature": 0})
>>> req.generation_params(prompt_tokens=1, context_length=256).max_tokens
4
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from docllm.ports.inference import GenerationParams
from docllm.serving.chat import STOP, ChatMessage, render_chat

FinishReason = Literal["stop", "length"]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _SamplingFields(BaseModel):
    """The fields completions and chat share."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=10)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=-1, description="vLLM extension; -1 or 0: off")
    repetition_penalty: float | None = Field(default=None, gt=0, le=10, description="vLLM extension")
    copy_from: list[Annotated[str, Field(max_length=2000)]] | None = Field(
        default=None, max_length=64, description="docllm extension: copy-constrained decoding (docllm.serving.copying)"
    )
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = 1
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = 0.0
    frequency_penalty: float | None = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _supported(self) -> _SamplingFields:
        if self.n not in (None, 1):
            raise ValueError("n must be 1: this engine returns one choice per request")
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence_penalty and frequency_penalty are not supported (use repetition_penalty)")
        if self.logit_bias:
            raise ValueError("logit_bias is not supported")
        stops = self.stop_list()
        if len(stops) > 8 or any(not s for s in stops):
            raise ValueError("stop takes at most 8 non-empty strings")
        return self

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def _params(self, max_tokens: int, extra_stops: tuple[str, ...] = ()) -> GenerationParams:
        stops = self.stop_list()
        stops += [s for s in extra_stops if s not in stops]
        return GenerationParams(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            top_k=self.top_k if self.top_k and self.top_k > 0 else None,
            repetition_penalty=self.repetition_penalty or 1.0,
            stop=stops[:8],
            seed=self.seed,
            copy_from=self.copy_from or None,
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_SamplingFields):
    """``POST /v1/completions``: a prompt string (or a list holding one), or token ids."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1, le=4096)
    echo: bool | None = False
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None

    @model_validator(mode="after")
    def _completion_supported(self) -> CompletionRequest:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1 and not all(isinstance(p, int) for p in self.prompt):
                raise ValueError("prompt must be one string (or a list of exactly one)")
            if not self.prompt:
                raise ValueError("prompt is empty")
        if self.echo:
            raise ValueError("echo is not supported")
        if self.logprobs is not None:
            raise ValueError("logprobs is not supported")
        if self.best_of not in (None, 1):
            raise ValueError("best_of must be 1")
        if self.suffix:
            raise ValueError("suffix is not supported")
        return self

    def prompt_input(self) -> str | list[int]:
        """The prompt as text, or as token ids when the client sent ids."""
        p = self.prompt
        if isinstance(p, str):
            return p
        first = p[0]
        if isinstance(first, str):
            return first
        if isinstance(first, list):
            return list(first)
        return [int(x) for x in p]  # type: ignore[arg-type]  # a flat list of ids

    def generation_params(self, *, prompt_tokens: int, context_length: int) -> GenerationParams:
        return self._params(self.max_tokens if self.max_tokens is not None else 16)


class _ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """A message as clients send it: content may be a string or a list of text parts."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_ContentPart]
    name: str | None = None

    def message(self) -> ChatMessage:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return ChatMessage(role=self.role, content=text)


class ChatCompletionRequest(_SamplingFields):
    """``POST /v1/chat/completions``: rendered with :func:`docllm.serving.chat.render_chat`."""

    messages: list[ChatMessageIn] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _chat_supported(self) -> ChatCompletionRequest:
        if len(self.stop_list()) > 8 - len(STOP):
            raise ValueError(f"stop takes at most {8 - len(STOP)} strings in chat (the chat format adds its own)")
        if self.logprobs or self.top_logprobs:
            raise ValueError("logprobs is not supported")
        if self.tools or self.tool_choice not in (None, "none"):
            raise ValueError("tools are not supported")
        if self.response_format and self.response_format.get("type") != "text":
            raise ValueError("response_format other than text is not supported")
        return self

    def prompt_text(self) -> str:
        return render_chat([m.message() for m in self.messages])

    def generation_params(self, *, prompt_tokens: int, context_length: int) -> GenerationParams:
        asked = self.max_completion_tokens or self.max_tokens
        # OpenAI's default is "as much as fits"; at least one token, so a full prompt is refused clearly.
        max_tokens = asked if asked is not None else max(1, min(4096, context_length - prompt_tokens))
        return self._params(max_tokens, STOP)


# --- responses -------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(
    rid: str, model: str, text: str, *, finish: FinishReason, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_chunk(rid: str, model: str, text: str, finish: FinishReason | None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
    }


def chat_completion(
    rid: str, model: str, text: str, *, finish: FinishReason, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(rid: str, model: str, delta: dict[str, str], finish: FinishReason | None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(rid: str, model: str, obj: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The last chunk of a stream asked with ``stream_options.include_usage``: no choices, the usage."""
    return {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


ERROR_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout",
}


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param, "code": code}
    }
