"""The ingestion domain over the team's real corpus (skipped where ../shared is absent)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from docllm.ingest.pipeline import Processed, Quarantine, process_document

pytestmark = pytest.mark.corpus

_FENCE_OPEN = re.compile(r"^(\s*)(`{3,}|~{3,})")


def source_fences(text: str) -> list[str]:
    """Fenced code blocks of a Markdown source, verbatim (LF line ends)."""
    lines = text.replace("\r\n", "\n").split("\n")
    out, i = [], 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if m and not (m.group(2)[0] == "`" and "`" in lines[i][m.end() :]):
            fch, flen = m.group(2)[0], len(m.group(2))
            j = i + 1
            while j < len(lines):
                s = lines[j].strip()
                if s and s[0] == fch and len(s) >= flen and s == fch * len(s):
                    break
                j += 1
            if j < len(lines):
                out.append("\n".join(lines[i : j + 1]))
            i = j
        i += 1
    return out


def test_every_lambda_guide_page_processes_with_code_blocks_intact(corpus_dir: Path) -> None:
    files = sorted((corpus_dir / "awsdocs" / "lambda" / "doc_source").glob("*.md"))
    assert files
    broken: list[str] = []
    for path in files:
        data = path.read_bytes()
        out = process_document(data, doc_key=f"lambda/{path.name}", doc_version="1", service="lambda")
        assert isinstance(out, Processed), (path.name, out)
        assert out.chunks and all(c.heading_path[0] == "AWS Lambda Developer Guide" for c in out.chunks)
        text = "\n\n".join(c.text for c in out.chunks)
        broken += [f"{path.name}: {f[:40]!r}" for f in source_fences(data.decode()) if f not in text]
    assert broken == []


def test_crlf_pages_of_the_s3_guide_keep_code_blocks(corpus_dir: Path) -> None:
    for name in ("delete-multiple-objects.md", "delete-objects.md"):
        data = (corpus_dir / "awsdocs" / "s3" / "doc_source" / name).read_bytes()
        assert b"\r\n" in data
        out = process_document(data, doc_key=f"s3/{name}", doc_version="1", service="s3")
        assert isinstance(out, Processed)
        text = "\n\n".join(c.text for c in out.chunks)
        assert all(f in text for f in source_fences(data.decode()))
        assert "\r" not in text


EXPECTED_HTML_QUARANTINE = {
    "powertools-lambda-python-docs-3.2.0/404.html": "not_found_page",
    "aws-eks-best-practices-guide/404.html": "not_found_page",
    "aws-copilot-cli-docs/docs/getting-started/index.html": "redirect_stub",
}
_CHROME = ("Made with", "Material for MkDocs", "Table of contents", "Back to top", "gtag(", "Skip to content")


def test_every_html_page_is_processed_or_quarantined_for_the_right_reason(corpus_dir: Path) -> None:
    root = corpus_dir / "html"
    pages = sorted(root.rglob("*.html"))
    assert len(pages) >= 30
    for path in pages:
        rel = path.relative_to(root).as_posix()
        out = process_document(path.read_bytes(), doc_key=rel, doc_version="1", service=rel.split("/")[0])
        if rel in EXPECTED_HTML_QUARANTINE:
            assert isinstance(out, Quarantine) and out.reason_code == EXPECTED_HTML_QUARANTINE[rel], rel
            continue
        assert isinstance(out, Processed), (rel, out)
        text = "\n".join(c.text for c in out.chunks)
        assert not [junk for junk in _CHROME if junk in text], rel
        expected_lang = (
            "ko" if rel.startswith("aws-eks-best-practices-guide/ko/") else ("ja" if "/ja/" in f"/{rel}" else "en")
        )
        assert out.language == expected_lang, rel


def test_html_code_blocks_keep_their_indentation(corpus_dir: Path) -> None:
    path = corpus_dir / "html" / "powertools-lambda-python-docs-3.2.0" / "core" / "tracer" / "index.html"
    out = process_document(path.read_bytes(), doc_key="pt/tracer", doc_version="1", service="pt")
    assert isinstance(out, Processed)
    text = "\n".join(c.text for c in out.chunks)
    assert "\n    Tracing: Active\n" in text  # YAML indentation inside the SAM template sample


SMALL_PDFS = [
    "aws-sagemaker-faq/Amazon_SageMaker_FAQs.pdf",
    "malformed/issue-297.pdf",
    "malformed/zen_of_python_corrupted.pdf",
    "malformed/issue-1113-evil-xobjects.pdf",
]
LARGE_PDFS = [
    f"aws-well-architected/{n}.pdf"
    for n in (
        "generative-ai-lens",
        "wellarchitected-security-pillar",
        "wellarchitected-operational-excellence-pillar",
        "wellarchitected-cost-optimization-pillar",
        "wellarchitected-performance-efficiency-pillar",
        "wellarchitected-sustainability-pillar",
    )
]


@pytest.mark.parametrize("name", SMALL_PDFS + [pytest.param(n, marks=pytest.mark.slow) for n in LARGE_PDFS])
def test_every_pdf_is_processed_or_quarantined_never_raises(corpus_dir: Path, name: str) -> None:
    data = (corpus_dir / "pdf" / name).read_bytes()
    out = process_document(data, doc_key=f"pdf/{name}", doc_version="1", service="pdf")
    assert isinstance(out, (Processed, Quarantine))
    if isinstance(out, Processed):
        assert all(c.pages and min(c.pages) >= 1 for c in out.chunks)
        assert out.page_count is not None and max(max(c.pages or [1]) for c in out.chunks) <= out.page_count
    if name.startswith("aws-well-architected/"):
        assert isinstance(out, Processed) and out.guide == "AWS Well-Architected Framework"
        assert any(len(c.heading_path) > 2 for c in out.chunks)  # outline headings were found
