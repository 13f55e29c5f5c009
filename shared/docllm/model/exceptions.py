"""Errors of the model package."""

from docllm.exceptions import PermanentError


class ModelError(PermanentError):
    """Base class of model errors."""


class ExportError(ModelError):
    """A model could not be exported or an export could not be read back."""


class TokenizerFilesError(ModelError):
    """The tokenizer directory is missing files or its special tokens cannot be read."""
