"""Content sniffing and decoding: what is this upload, and what text does it hold?

The format comes from the bytes first (magic numbers, markup) and only then
from the file extension, so a PDF named ``notes.md`` is read as a PDF.
"""

from __future__ import annotations

import codecs
import re
from typing import Literal

from docllm.ingest.exceptions import BinaryContentError

Format = Literal["markdown", "html", "pdf", "text"]

# Container and media formats that are certainly not documents we can read.
_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip stream"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an ELF executable"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\xfd7zXZ\x00", "an xz stream"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office document"),
    (b"\x00\x00\x00", "a binary file"),
)
_HTML_START = re.compile(
    rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body|meta|title)\b",
    re.IGNORECASE | re.DOTALL,
)
_MARKDOWN_HINT = re.compile(r"^(?:#{1,6}\s|```|~~~|\s*[-+*]\s|\s*\d+\.\s|\|.*\|\s*$)", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufffd]")


def sniff_format(data: bytes, doc_key: str) -> Format:
    """Decide the format of an upload from its leading bytes, then its extension.

    Raises
    ------
    BinaryContentError
        for a known binary container or media format.

    Examples
    --------
    >>> sniff_format(b"%PDF-1.7 ...", "notes.md")
    'pdf'
    >>> sniff_format(b"<!doctype html><title>x</title>", "a.txt")
    'html'
    """
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf"
    for magic, what in _BINARY_MAGIC:
        if data.startswith(magic):
            raise BinaryContentError(f"The file is {what}, not a document.")
    if _HTML_START.match(data[:4096].lstrip(codecs.BOM_UTF8)):
        return "html"
    ext = doc_key.rsplit("/", 1)[-1].rsplit(".", 1)[-1].lower() if "." in doc_key else ""
    if ext in ("html", "htm", "xhtml"):
        return "html"
    if ext in ("md", "markdown", "mdx", "mkd"):
        return "markdown"
    if ext == "pdf":
        return "pdf"  # the PDF reader will say precisely what is wrong with it
    return "text"


def looks_like_markdown(text: str) -> bool:
    """Plain-text uploads with Markdown structure are parsed as Markdown."""
    return len(_MARKDOWN_HINT.findall(text[:20_000])) >= 2


def decode_text(data: bytes, *, max_garbage_ratio: float = 0.05) -> tuple[str, str]:
    """Decode bytes to text; return ``(text, encoding)``.

    BOMs win; then strict UTF-8; a file that is *mostly* UTF-8 (mixed encodings,
    e.g. a Latin-1 paragraph pasted into a UTF-8 file) is decoded line by line, each
    line as UTF-8 or else as the encoding charset-normalizer guesses for the rest.

    Raises
    ------
    BinaryContentError
        when the bytes do not decode to readable text.

    Examples
    --------
    >>> decode_text("café".encode("utf-8"))
    ('café', 'utf-8')
    >>> decode_text(b"caf\\xe9\\n" + "café".encode("utf-8"))[0]
    'café\\ncafé'
    """
    for bom, enc in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            text = data[len(bom) :].decode(enc, errors="replace")
            _check_readable(text, max_garbage_ratio)
            return text, enc
    if b"\x00" in data[:8192]:
        raise BinaryContentError("The file contains NUL bytes: it is binary, not text.")
    try:
        text = data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        text, encoding = _decode_mixed(data)
    _check_readable(text, max_garbage_ratio)
    return text, encoding


def _decode_mixed(data: bytes) -> tuple[str, str]:
    lines = data.split(b"\n")
    bad: list[int] = []
    decoded: list[str | None] = []
    for idx, line in enumerate(lines):
        try:
            decoded.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            decoded.append(None)
            bad.append(idx)
    sample = b"\n".join(lines[i] for i in bad[:2000])[:65536]
    fallback = _guess_encoding(sample)
    for idx in bad:
        decoded[idx] = lines[idx].decode(fallback, errors="replace")
    label = "utf-8" if len(bad) < len(lines) else fallback
    if 0 < len(bad) < len(lines):
        label = f"utf-8+{fallback}"
    return "\n".join(d or "" for d in decoded), label


def _guess_encoding(sample: bytes) -> str:
    # Below about 1 KB charset-normalizer's guesses scatter across the single-byte
    # code pages (a lone "è" reads as cp1250 "č"); cp1252 is the commonest legacy
    # encoding of documentation text and decodes every byte.
    if len(sample) < 1024:
        return "cp1252"
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None:
        raise BinaryContentError("The bytes match no text encoding: the file looks like binary data.")
    return str(best.encoding)


_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F])


def _check_readable(text: str, max_garbage_ratio: float) -> None:
    sample = text[:65536]
    if not sample:
        return
    # The same count as _CONTROL.findall: ASCII controls are single UTF-8 bytes, which
    # bytes.translate deletes at memory speed (a regex scan costs ~10x as much).
    raw = sample.encode("utf-8", "surrogatepass")
    garbage = len(raw) - len(raw.translate(None, _CONTROL_BYTES)) + sample.count("\ufffd")
    if garbage / len(sample) > max_garbage_ratio:
        raise BinaryContentError(
            f"{garbage} of the first {len(sample)} characters are control or undecodable characters:"
            " the file looks like binary data."
        )
