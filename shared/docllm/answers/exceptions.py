"""Errors of the answer path that are neither the engine's nor the index's own."""

from __future__ import annotations

from docllm.exceptions import PermanentError, TransientError


class ModelMismatchError(PermanentError):
    """The caller asked for a model version other than the one deployed (HTTP 409)."""

    def __init__(self, asked: str, deployed: str) -> None:
        super().__init__(f"model {asked!r} is not deployed; the deployed model is {deployed!r}")
        self.asked = asked
        self.deployed = deployed


class RateLimitedError(TransientError):
    """The caller spent its request allowance: try again after ``retry_after_s`` (HTTP 429)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many questions: retry after {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s
