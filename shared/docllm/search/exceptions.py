"""Typed errors of the search package."""

from __future__ import annotations

from docllm.exceptions import PermanentError, TransientError


class SearchError(PermanentError):
    """Base class of permanent search errors."""


class UnknownServiceError(SearchError):
    """A query filtered on a service the index holds no chunk of."""

    def __init__(self, service: str, known: set[str]) -> None:
        super().__init__(f"unknown service {service!r}; known: {sorted(known)}")
        self.service = service
        self.known = known


class InvalidChunkError(SearchError):
    """A chunk does not belong to the document it was indexed under."""


class DevsetFormatError(SearchError):
    """A line of an evaluation question file is not valid."""

    def __init__(self, line_no: int, reason: str) -> None:
        super().__init__(f"line {line_no}: {reason}")
        self.line_no = line_no


class IndexBusyError(TransientError):
    """The index is locked by another writer for longer than the wait allows."""


class BulkIndexingError(SearchError):
    """OpenSearch rejected documents of a bulk request for reasons retrying cannot fix."""


class EncoderArtifactError(SearchError):
    """A trained encoder's files are missing, malformed or do not match their card."""
