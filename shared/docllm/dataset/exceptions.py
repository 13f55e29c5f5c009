"""Typed errors of the dataset stage."""

from __future__ import annotations

from docllm.exceptions import DocllmError, NotFoundError, PermanentError


class DatasetError(DocllmError):
    """Base class of dataset-stage errors."""


class EmptyDatasetError(DatasetError, PermanentError):
    """No processed document matches the filters: there is nothing to freeze."""


class DatasetNotFoundError(DatasetError, NotFoundError):
    """The dataset version (or its manifest) does not exist."""


class ChunksUnreadableError(DatasetError, PermanentError):
    """A processed document's chunks file is missing or not valid JSONL of chunks."""


class ShardFormatError(DatasetError, PermanentError):
    """A shard index or shard file is inconsistent (wrong size, unknown format version)."""
