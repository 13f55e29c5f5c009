"""Property tests: no input makes the parsers raise, and code survives chunking intact."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docllm.ingest.pipeline import IngestConfig, Processed, Quarantine, process_document

CFG = IngestConfig(chunk_tokens=64, min_chunk_tokens=8)
_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(data=st.binary(max_size=2048), name=st.sampled_from(["a.md", "a.html", "a.pdf", "a.txt", "a"]))
def test_arbitrary_bytes_never_raise(data: bytes, name: str) -> None:
    out = process_document(data, doc_key=f"s3/{name}", doc_version="1", service="s3", config=CFG)
    assert isinstance(out, (Processed, Quarantine))
    assert not isinstance(out, Quarantine) or out.reason_code != "unprocessable", out.reason


_md_piece = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200),
    st.sampled_from(
        [
            "# H1",
            "## H2",
            "### H3",
            "+ item",
            "1. step",
            "| a | b |",
            "\\.",
            '<a name="x"></a>',
            "```",
            "   ```",
            "~~~",
            "\r\n",
            "\n\n",
        ]
    ),
)


@_settings
@given(pieces=st.lists(_md_piece, max_size=30))
def test_arbitrary_markdown_never_raises(pieces: list[str]) -> None:
    data = "\n".join(pieces).encode("utf-8")
    out = process_document(data, doc_key="s3/x.md", doc_version="1", service="s3", config=CFG)
    assert isinstance(out, Processed) or out.reason_code in ("empty", "binary")


@_settings
@given(
    code_lines=st.lists(
        st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="`~"), max_size=60),
        min_size=1,
        max_size=20,
    ),
    prose=st.lists(st.text(alphabet="abcdefgh ijk.", min_size=1, max_size=300), min_size=1, max_size=8),
)
def test_code_block_survives_chunking_byte_identical(code_lines: list[str], prose: list[str]) -> None:
    fence = "```\n" + "\n".join(code_lines) + "\n```"
    doc = "# Title\n\n" + "\n\n".join(prose) + "\n\n" + fence + "\n\n" + "\n\n".join(prose) + "\n"
    out = process_document(doc.encode(), doc_key="s3/x.md", doc_version="1", service="s3", config=CFG)
    assert isinstance(out, Processed)
    assert sum(fence in c.text for c in out.chunks) == 1


@_settings
@given(body=st.text(max_size=500))
def test_arbitrary_html_never_raises(body: str) -> None:
    data = f"<!doctype html><html><body><main>{body}</main></body></html>".encode("utf-8", "surrogatepass")
    out = process_document(data, doc_key="s3/x.html", doc_version="1", service="s3", config=CFG)
    # A parser bug would surface as "unprocessable": only input-driven reasons are allowed.
    assert isinstance(out, Processed) or out.reason_code in ("empty", "binary", "no_main_content", "not_found_page")
