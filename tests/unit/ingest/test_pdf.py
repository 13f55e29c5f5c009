from __future__ import annotations

import io

from pdf_factory import deflate_bomb, make_pdf

from docllm.ingest.pipeline import IngestConfig, Processed, Quarantine, process_document


def _process(data: bytes, **cfg: int) -> Processed | Quarantine:
    return process_document(
        data, doc_key="wa/doc.pdf", doc_version="1", service="wa", config=IngestConfig(**cfg) if cfg else None
    )


def test_pages_are_kept_in_chunk_metadata_and_outline_gives_headings() -> None:
    pdf = make_pdf(
        [
            ["Overview", "The overview explains the pillar in enough words."],
            ["Design principles", "Principles are listed on the second page of text."],
        ],
        title="Security Pillar - AWS Well-Architected Framework",
        outline=[("Overview", 0), ("Design principles", 1)],
    )
    out = _process(pdf, min_chunk_tokens=0, chunk_tokens=40)
    assert isinstance(out, Processed) and out.content_format == "pdf" and out.page_count == 2
    assert out.title == "Security Pillar" and out.guide == "AWS Well-Architected Framework"
    by_heading = {c.heading_path[-1]: c.pages for c in out.chunks}
    assert by_heading == {"Overview": [1], "Design principles": [2]}


def test_running_header_repeated_on_every_page_is_removed() -> None:
    topics = ["buckets", "objects", "versioning", "replication", "lifecycle", "encryption"]
    pages = [["Example Guide Header", f"This page explains {t} in detail.", f"More about {t} follows."] for t in topics]
    out = _process(make_pdf(pages))
    assert isinstance(out, Processed)
    text = "\n".join(c.text for c in out.chunks)
    assert "Example Guide Header" not in text and "This page explains encryption in detail." in text


def test_encrypted_pdf_is_quarantined() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["secret text"]]))))
    writer.encrypt(user_password="pw", owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    out = _process(buf.getvalue())
    assert isinstance(out, Quarantine) and out.reason_code == "pdf_encrypted"


def test_truncated_pdf_is_quarantined_or_partially_read_never_raises() -> None:
    pdf = make_pdf([["Some text on the only page of this document."]])
    for cut in (10, len(pdf) // 3, len(pdf) - 30):
        out = _process(pdf[:cut])
        assert isinstance(out, (Processed, Quarantine))
    out = _process(b"%PDF-1.4\n garbage garbage")
    assert isinstance(out, Quarantine) and out.reason_code == "pdf_corrupt"


def test_decompression_bomb_is_quarantined_without_inflating_it() -> None:
    pdf = make_pdf([], raw_streams=[deflate_bomb(8 * 1024 * 1024)])
    out = _process(pdf, max_pdf_stream_bytes=1024 * 1024)
    assert isinstance(out, Quarantine) and out.reason_code == "pdf_decompression_bomb"


def test_too_many_pages_is_quarantined() -> None:
    out = _process(make_pdf([["a page of text"]] * 3), max_pdf_pages=2)
    assert isinstance(out, Quarantine) and out.reason_code == "pdf_too_many_pages"


def test_pdf_without_text_is_quarantined_as_no_main_content() -> None:
    out = _process(make_pdf([[]]))
    assert isinstance(out, Quarantine) and out.reason_code == "no_main_content"
