"""Typed errors of the tokenizer stage."""

from __future__ import annotations

from docllm.exceptions import DocllmError, NotFoundError, PermanentError


class TokenizerError(DocllmError):
    """Base class of tokenizer-stage errors."""


class TokenizerSettingsError(TokenizerError, PermanentError):
    """Settings (hyperparameters) are invalid; the message names the offending field."""


class TokenizerTrainingError(TokenizerError, PermanentError):
    """SentencePiece refused the input or the settings (e.g. vocabulary too small for the alphabet)."""


class TokenizerNotFoundError(TokenizerError, NotFoundError):
    """No tokenizer artefacts where they were expected."""
