from __future__ import annotations

import pytest

from docllm.ingest.exceptions import BinaryContentError
from docllm.ingest.pipeline import Processed, Quarantine, process_document
from docllm.ingest.sniff import decode_text, sniff_format


def test_format_comes_from_content_before_extension() -> None:
    assert sniff_format(b"%PDF-1.7\n...", "notes.md") == "pdf"
    assert sniff_format(b"  <!DOCTYPE html><html><body>x</body></html>", "page.txt") == "html"
    assert sniff_format(b"# Title\n", "readme.md") == "markdown"
    assert sniff_format(b"plain words", "file") == "text"


def test_archives_and_images_are_binary() -> None:
    for data in (b"PK\x03\x04rest", b"\x89PNG\r\n\x1a\nrest", b"\x1f\x8b\x08rest"):
        with pytest.raises(BinaryContentError):
            sniff_format(data, "doc.md")


def test_mixed_utf8_and_latin1_lines_are_both_decoded() -> None:
    data = "Café in UTF-8\n".encode() + "Crème in Latin-1\n".encode("latin-1")
    text, encoding = decode_text(data)
    assert "Café" in text and "Crème" in text
    assert encoding.startswith("utf-8+")


def test_utf16_with_bom_is_decoded() -> None:
    text, _ = decode_text("Hello wörld".encode("utf-16"))
    assert text == "Hello wörld"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (b"   \n\t\n", "empty"),
        (b"\x00\x01\x02\x03" * 100, "binary"),
        (b"PK\x03\x04" + b"\x00" * 100, "binary"),
    ],
)
def test_bad_input_is_quarantined_with_a_reason(data: bytes, code: str) -> None:
    out = process_document(data, doc_key="s3/x.md", doc_version="1", service="s3")
    assert isinstance(out, Quarantine)
    assert out.reason_code == code and out.reason


def test_upload_over_the_size_cap_is_quarantined_as_too_large() -> None:
    from docllm.ingest.pipeline import IngestConfig

    out = process_document(
        b"a" * 2000, doc_key="s3/x.md", doc_version="1", service="s3", config=IngestConfig(max_bytes=1000)
    )
    assert isinstance(out, Quarantine) and out.reason_code == "too_large"


def test_very_long_line_is_processed_within_the_budget() -> None:
    data = b"# Long\n\n" + b"word " * 400_000
    out = process_document(data, doc_key="s3/long.md", doc_version="1", service="s3")
    assert isinstance(out, Processed)
    assert max(c.token_estimate for c in out.chunks) <= 512


def test_plain_text_file_becomes_paragraph_chunks() -> None:
    out = process_document(
        b"First paragraph here.\n\nSecond paragraph here.", doc_key="s3/notes", doc_version="1", service="s3"
    )
    assert isinstance(out, Processed) and out.content_format == "text"
    assert out.title == "notes"
