"""Errors of the compliance manifest."""

from __future__ import annotations

from docllm.exceptions import NotFoundError, PermanentError


class ManifestError(PermanentError):
    """A manifest cannot be built or read as it is (a value JSON cannot hold, a malformed statement)."""


class ManifestNotFoundError(NotFoundError):
    """No manifest was issued for that model version (or that sequence number)."""


class ManifestInputError(PermanentError):
    """A record the manifest is assembled from is missing or incomplete: it cannot be retyped, so
    the manifest cannot be issued until the stage that owns the record has written it."""
