from __future__ import annotations

from pathlib import Path

from docllm.ingest.markdown import parse_markdown
from docllm.ingest.pipeline import Processed, process_document

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ingest"


def _fences(text: str) -> list[str]:
    """Fenced blocks of the source, verbatim (any indentation)."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            out.append("\n".join(lines[i : j + 1]))
            i = j
        i += 1
    return out


def test_aws_dialect_escapes_and_anchors_are_removed_from_prose() -> None:
    blocks = parse_markdown((FIXTURES / "aws_dialect.md").read_text())
    headings = [b.text for b in blocks if b.kind == "heading"]
    assert headings == ["Working with buckets", "Creating a bucket", "Deleting a bucket"]
    prose = "\n".join(b.text for b in blocks if b.kind == "text")
    assert "Amazon S3." in prose and "(up to 5 TB each)." in prose
    assert "<a name" not in prose and "Image NOT FOUND" not in prose
    # Backslashes inside inline code are literal, not escapes.
    assert "(`\\`)" in prose


def test_code_fences_are_kept_byte_identical_including_indented_ones() -> None:
    source = (FIXTURES / "aws_dialect.md").read_text()
    code = [b.text for b in parse_markdown(source) if b.kind == "code"]
    assert code == _fences(source)
    assert any(c.startswith("   ```") for c in code)


def test_tab_label_headings_do_not_open_sections() -> None:
    blocks = parse_markdown("## Example\n\n#### [ Python ]\n\n```\nx = 1\n```\n")
    assert [b.kind for b in blocks] == ["heading", "text", "code"]
    assert blocks[1].text == "**Python**"


def test_crlf_file_gives_the_same_chunks_as_lf() -> None:
    lf = (FIXTURES / "aws_dialect.md").read_bytes()
    crlf = lf.replace(b"\n", b"\r\n")
    a = process_document(lf, doc_key="s3/b.md", doc_version="1", service="s3")
    b = process_document(crlf, doc_key="s3/b.md", doc_version="1", service="s3")
    assert isinstance(a, Processed) and isinstance(b, Processed)
    assert [c.text for c in a.chunks] == [c.text for c in b.chunks]


def test_unclosed_fence_runs_to_the_end_and_is_closed() -> None:
    blocks = parse_markdown("intro text\n\n```\ncode line\n\n# not a heading\n")
    assert [b.kind for b in blocks] == ["text", "code"]
    assert blocks[1].text.endswith("\n```") and "# not a heading" in blocks[1].text
