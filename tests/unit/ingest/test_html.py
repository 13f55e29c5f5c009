from __future__ import annotations

from pathlib import Path

from docllm.ingest.pipeline import Processed, Quarantine, process_document

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ingest"


def _process(name: str) -> Processed | Quarantine:
    return process_document((FIXTURES / name).read_bytes(), doc_key=f"docs/{name}", doc_version="1", service="docs")


def test_page_chrome_is_removed_and_content_kept() -> None:
    out = _process("page_with_chrome.html")
    assert isinstance(out, Processed)
    text = "\n".join(c.text for c in out.chunks)
    for junk in (
        "cookies",
        "Navigation drawer",
        "Copyright",
        "Edit this page",
        "inline analytics",
        "dataLayer",
        "Search the site",
        "¶",
    ):
        assert junk not in text
    assert "The logger writes `structured` JSON lines" in text
    assert out.title == "Logger" and out.guide == "Example Docs"


def test_code_keeps_indentation_and_drops_line_numbers() -> None:
    out = _process("page_with_chrome.html")
    assert isinstance(out, Processed)
    text = "\n".join(c.text for c in out.chunks)
    expected = 'def handler(event, context):\n    if event:\n        logger.info("hello")\n    return {}'
    assert f"```python\n{expected}\n```" in text
    assert "1\n2\n3\n4" not in text


def test_lists_and_tables_become_markdown() -> None:
    out = _process("page_with_chrome.html")
    assert isinstance(out, Processed)
    text = "\n".join(c.text for c in out.chunks)
    assert "- Level: `INFO` by default" in text
    assert "  - nested item" in text
    assert "| Setting | Default |" in text and "| service | unknown \\| none |" in text


def test_not_found_page_is_quarantined() -> None:
    out = _process("not_found.html")
    assert isinstance(out, Quarantine) and out.reason_code == "not_found_page"


def test_redirect_stub_is_quarantined_with_its_target() -> None:
    out = _process("redirect.html")
    assert isinstance(out, Quarantine) and out.reason_code == "redirect_stub"
    assert "tutorial/" in out.reason


def test_page_without_main_content_is_quarantined() -> None:
    out = _process("only_chrome.html")
    assert isinstance(out, Quarantine) and out.reason_code == "no_main_content"


def test_korean_page_gets_language_tag_ko() -> None:
    out = _process("korean.html")
    assert isinstance(out, Processed)
    assert out.language == "ko" and all(c.language == "ko" for c in out.chunks)
    assert out.chunks[0].heading_path[:2] == ["EKS 모범 사례 가이드", "카펜터"]
