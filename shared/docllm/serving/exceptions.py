"""Errors of inference, shared by the engine, its server, the inference adapters and the answers."""

from __future__ import annotations

from docllm.exceptions import InvalidRequestError, NotFoundError, TransientError


class EngineBusyError(TransientError):
    """The engine's queue is full: try again shortly (HTTP 429)."""


class EngineUnavailableError(TransientError):
    """The engine cannot be reached or is not ready (HTTP 503)."""


class NoModelDeployedError(NotFoundError):
    """No model version is deployed on the target asked for."""


class PromptTooLongError(InvalidRequestError):
    """The prompt and the tokens asked for do not fit in the model's context."""


class GenerationTimeoutError(TransientError):
    """A request did not finish within its timeout, queue wait included (HTTP 504)."""
