"""Typed errors of the ingestion domain.

Each error class carries the stable ``reason_code`` under which
:func:`docllm.ingest.pipeline.process_document` quarantines the document, so the
mapping goes by type, never by message text.  Messages are one sentence for a person.
"""

from __future__ import annotations

from typing import ClassVar

from docllm.exceptions import PermanentError


class IngestError(PermanentError):
    """Base class: the document cannot be ingested as it is."""

    reason_code: ClassVar[str] = "unprocessable"


class EmptyDocumentError(IngestError):
    reason_code = "empty"


class BinaryContentError(IngestError):
    reason_code = "binary"


class TooLargeError(IngestError):
    reason_code = "too_large"


class UnsupportedFormatError(IngestError):
    reason_code = "unsupported_format"


class NotFoundPageError(IngestError):
    """An HTML page that is a site's "404 - Not found" page."""

    reason_code = "not_found_page"


class RedirectStubError(IngestError):
    """An HTML page whose only purpose is to redirect elsewhere (meta refresh)."""

    reason_code = "redirect_stub"


class NoMainContentError(IngestError):
    """Nothing readable is left once navigation and boilerplate are removed."""

    reason_code = "no_main_content"


class PdfEncryptedError(IngestError):
    reason_code = "pdf_encrypted"


class PdfCorruptError(IngestError):
    reason_code = "pdf_corrupt"


class PdfTooManyPagesError(IngestError):
    reason_code = "pdf_too_many_pages"


class ProcessingTimeoutError(IngestError):
    """Extraction ran past its time budget (a hostile or pathological file)."""

    reason_code = "timeout"


class PdfBombError(IngestError):
    """A compressed stream inflates far beyond any real page (a decompression bomb)."""

    reason_code = "pdf_decompression_bomb"
