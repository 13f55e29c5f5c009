"""Errors of the LoRA package."""

from __future__ import annotations

from docllm.exceptions import ConfigurationError, DocllmError, PermanentError


class LoraError(DocllmError):
    """Base class of LoRA errors."""


class LoraConfigError(ConfigurationError):
    """A LoRA setting is invalid; ``field`` names it (``lora_config.<field>``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class BaseModelError(PermanentError, LoraError):
    """The base model directory is missing, unreadable, or not a causal language model."""


class LoraDataError(PermanentError, LoraError):
    """The dataset gives no example to train on (or a JSONL file is malformed)."""
