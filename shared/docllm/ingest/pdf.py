"""PDF extraction with pypdfium2 (PDFium; Apache-2.0/BSD): text per page, headings from the outline.

Every block carries its 1-based page number.  Headings come from the document
outline (bookmarks): an outline entry's title is looked for among its
destination page's lines, and becomes a heading there (or at the top of the
page when the text does not repeat it).  Running headers and footers (the same
first or last line on at least half of the pages) are removed.
"""

from __future__ import annotations

import re
import time
import zlib
from collections import Counter
from dataclasses import dataclass

from docllm.ingest.exceptions import (
    NoMainContentError,
    PdfBombError,
    PdfCorruptError,
    PdfEncryptedError,
    PdfTooManyPagesError,
    ProcessingTimeoutError,
)
from docllm.ingest.text import Block, normalize_prose


@dataclass(slots=True)
class PdfDocument:
    """What the PDF extractor found: blocks, page count and metadata-derived names."""

    blocks: list[Block]
    page_count: int
    title: str | None
    guide: str | None


_DIGITS = re.compile(r"\d+")
_WS = re.compile(r"\s+")
_BULLET = re.compile(r"^(?:[•◦▪‣●○■□–-]|\d{1,3}[.)])\s")
_SENTENCE_END = (".", ":", "!", "?", "。", "」", ")")


def _norm(line: str) -> str:
    return _WS.sub(" ", line).strip()


def _running_lines(pages: list[list[str]]) -> set[str]:
    """First/last lines that repeat on at least half of the pages (digits masked)."""
    if len(pages) < 4:
        return set()
    counts: Counter[str] = Counter()
    for lines in pages:
        # On a page of two lines both are body text as likely as furniture.
        if len(lines) >= 3:
            counts.update({_DIGITS.sub("#", lines[0]), _DIGITS.sub("#", lines[-1])})
    return {ln for ln, c in counts.items() if c >= len(pages) / 2}


def _paragraphs(lines: list[str]) -> list[str]:
    """Rebuild paragraphs: PDF text has line breaks but no paragraph breaks."""
    if not lines:
        return []
    width = max(len(ln) for ln in lines)
    paras: list[list[str]] = [[]]
    for ln in lines:
        prev = paras[-1][-1] if paras[-1] else None
        if prev is not None and (_BULLET.match(ln) or (prev.endswith(_SENTENCE_END) and len(prev) < 0.8 * width)):
            paras.append([])
        paras[-1].append(ln)
    out = []
    for para in paras:
        text = " ".join(para)
        # Words hyphenated at a line end are rejoined ("infra- structure" is rare in these docs).
        text = text.replace("\u00ad ", "").replace("\u00ad", "")
        if text:
            out.append(text)
    return out


_STREAM = re.compile(rb"(?<!end)stream\r?\n")


def check_inflation(data: bytes, max_stream_bytes: int) -> None:
    """Inflate every Flate stream with bounded buffers before PDFium sees the file.

    PDFium inflates a whole content stream in memory, so a 200 KB stream that
    inflates to gigabytes would exhaust the Lambda.  Here each stream is inflated
    1 MiB at a time and discarded, and the file is rejected once one passes the cap.

    Raises
    ------
    PdfBombError
        when a stream inflates beyond ``max_stream_bytes``.
    """
    for m in _STREAM.finditer(data):
        start = m.end()
        end = data.find(b"endstream", start)
        if end < 0:
            end = len(data)
        inflater = zlib.decompressobj()
        pending = data[start:end]
        total = 0
        try:
            while pending:
                total += len(inflater.decompress(pending, 1 << 20))
                if total > max_stream_bytes:
                    raise PdfBombError(
                        f"A compressed stream at byte {start:,} inflates past {max_stream_bytes:,} bytes."
                    )
                if inflater.eof:
                    break
                pending = inflater.unconsumed_tail
        except zlib.error:
            continue  # not Flate, or damaged: PDFium copes or reports it


def _heading(title: str, outline_level: int, page_no: int) -> Block:
    # Outline level 0 is a top-level chapter: a level-1 heading under the document title.
    return Block("heading", normalize_prose(title), level=min(outline_level + 1, 6), pages=[page_no])


def _split_title(raw: str | None) -> tuple[str | None, str | None]:
    if not raw or not raw.strip():
        return None, None
    raw = _norm(raw)
    if " - " in raw:
        title, guide = raw.rsplit(" - ", 1)
        return title.strip() or None, guide.strip() or None
    return raw, None


def extract_pdf(
    data: bytes,
    *,
    max_pages: int = 2000,
    max_chars_per_page: int = 200_000,
    max_seconds: float = 120.0,
    max_stream_bytes: int = 64 * 1024 * 1024,
) -> PdfDocument:
    """Extract text blocks from a PDF, one page at a time, within time and size caps.

    Raises
    ------
    PdfEncryptedError
        when the PDF needs a password.
    PdfCorruptError
        when PDFium cannot open it at all.
    PdfBombError
        when a compressed stream inflates beyond ``max_stream_bytes``.
    PdfTooManyPagesError
        above ``max_pages`` pages.
    ProcessingTimeoutError
        when extraction passes ``max_seconds`` (checked between pages).
    NoMainContentError
        when no page has extractable text (a scanned PDF without OCR).

    Examples
    --------
    >>> extract_pdf(b"%PDF-1.4 not really")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    docllm.ingest.exceptions.PdfCorruptError: ...
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    started = time.monotonic()
    check_inflation(data, max_stream_bytes)
    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        if e.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise PdfEncryptedError("The PDF is encrypted and needs a password to be read.") from e
        raise PdfCorruptError("The PDF is damaged beyond repair: PDFium could not open it.") from e
    try:
        page_count = len(doc)
        if page_count > max_pages:
            raise PdfTooManyPagesError(f"The PDF has {page_count} pages; the limit is {max_pages}.")
        try:
            meta_title: str | None = doc.get_metadata_value("Title")
        except Exception:  # metadata is optional decoration; a broken entry must not fail the file
            meta_title = None
        headings: dict[int, list[tuple[int, str]]] = {}
        first_outline_title: str | None = None
        try:
            for bm in doc.get_toc(max_depth=8):
                title = _norm(bm.get_title() or "")
                dest = bm.get_dest()
                index = dest.get_index() if dest is not None else None
                if not title or index is None:
                    continue
                first_outline_title = first_outline_title or title
                headings.setdefault(index, []).append((bm.level, title))
        except Exception:  # a malformed outline loses headings, not the text
            headings = {}

        pages: list[list[str]] = []
        for index in range(page_count):
            if time.monotonic() - started > max_seconds:
                raise ProcessingTimeoutError(
                    f"Extraction passed {max_seconds:.0f} s at page {index + 1} of {page_count}."
                )
            try:
                page = doc[index]
                textpage = page.get_textpage()
                raw = textpage.get_text_bounded()[:max_chars_per_page]
                textpage.close()
                page.close()
            except pdfium.PdfiumError:
                raw = ""  # one unreadable page loses that page only
            lines = [ln for ln in (_norm(x) for x in raw.replace("\r\n", "\n").split("\n")) if ln]
            pages.append(lines)
    finally:
        doc.close()

    running = _running_lines(pages)
    blocks: list[Block] = []
    for index, page_lines in enumerate(pages):
        page_no = index + 1
        lines = [ln for ln in page_lines if _DIGITS.sub("#", ln) not in running] if running else page_lines
        page_headings = headings.get(index, [])
        # Outline titles found among the lines split the page; others open it.
        positions: dict[int, tuple[int, str]] = {}
        for level, title in page_headings:
            at = next((i for i, ln in enumerate(lines) if ln == title and i not in positions), None)
            if at is None:
                blocks.append(_heading(title, level, page_no))
            else:
                positions[at] = (level, title)
        run: list[str] = []
        for i, ln in enumerate(lines):
            if i in positions:
                blocks.extend(Block("text", normalize_prose(p), pages=[page_no]) for p in _paragraphs(run))
                run = []
                level, title = positions[i]
                blocks.append(_heading(title, level, page_no))
            else:
                run.append(ln)
        blocks.extend(Block("text", normalize_prose(p), pages=[page_no]) for p in _paragraphs(run))
    blocks = [b for b in blocks if b.text]
    if not any(b.kind == "text" for b in blocks):
        raise NoMainContentError(
            f"None of the {page_count} pages has extractable text (a scanned PDF needs OCR first)."
        )
    doc_title, guide = _split_title(meta_title if isinstance(meta_title, str) else None)
    return PdfDocument(blocks, page_count, doc_title or first_outline_title, guide)
