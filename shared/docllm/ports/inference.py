"""Inference port: text in, text out, from the model version a target serves.

Three adapters, one answer path: the local engine server (HTTP, OpenAI-compatible), a SageMaker
endpoint running the vLLM container (its OpenAI route through ``InvokeEndpoint``), and Bedrock
(``InvokeModel`` on an imported model). Decoding defaults to greedy, so an answer is repeatable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class GenerationParams(BaseModel):
    """How to continue a prompt (the OpenAI completion parameters the engines share)."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(default=64, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0, le=10, description="0: greedy")
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    repetition_penalty: float = Field(default=1.0, gt=0, le=10)
    stop: list[str] = Field(default_factory=list, max_length=8)
    seed: int | None = None
    # Bounded: the engine tokenizes these on its scheduler thread, so an unbounded list would stall
    # every request beside it (64 sentences of at most 2,000 characters; the answer path sends fewer).
    copy_from: list[Annotated[str, Field(max_length=2000)]] | None = Field(
        default=None,
        max_length=64,
        description="docllm extension: the continuation copies spans of these texts, sentence start to "
        "sentence end (docllm.serving.copying); engines without it ignore it",
    )


class Generation(BaseModel):
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    model: str = Field(description="the model version that answered")


class ModelInfo(BaseModel):
    model: str = Field(description="the model version served")
    context_length: int = Field(gt=0)


class InferenceEngine(ABC):
    @abstractmethod
    def info(self) -> ModelInfo:
        """The model served and its context length (raises NoModelDeployedError when none is)."""

    @abstractmethod
    def generate(self, prompt: str, params: GenerationParams) -> Generation: ...

    @abstractmethod
    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        """The continuation as text deltas, in order."""
