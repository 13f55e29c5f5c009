from __future__ import annotations

from docllm.ingest.chunker import chunk_blocks
from docllm.ingest.pipeline import IngestConfig, Processed, process_document
from docllm.ingest.text import Block, estimate_tokens


def _para(words: int, seed: str = "word") -> Block:
    return Block("text", " ".join(f"{seed}{i}" for i in range(words)) + ".")


def test_breadcrumb_follows_heading_nesting() -> None:
    blocks = [
        Block("heading", "Page", 1),
        _para(60),
        Block("heading", "Section", 2),
        _para(60),
        Block("heading", "Sub", 3),
        _para(60),
        Block("heading", "Other", 2),
        _para(60),
    ]
    chunks = chunk_blocks(blocks, base_path=["Guide", "Page"], budget=200, min_tokens=10)
    paths = [c.heading_path for c in chunks]
    assert paths == [
        ["Guide", "Page"],
        ["Guide", "Page", "Section"],
        ["Guide", "Page", "Section", "Sub"],
        ["Guide", "Page", "Other"],
    ]


def test_long_section_is_split_at_block_boundaries_within_budget() -> None:
    blocks = [Block("heading", "S", 2)] + [_para(40, f"p{i}x") for i in range(10)]
    chunks = chunk_blocks(blocks, base_path=["G"], budget=120, min_tokens=10)
    assert len(chunks) > 1
    assert all(c.token_estimate <= 120 for c in chunks)
    # Every paragraph survives whole in exactly one chunk.
    for b in blocks[1:]:
        assert sum(b.text in c.text for c in chunks) == 1


def test_code_block_is_never_split_even_when_over_budget() -> None:
    code = "```\n" + "\n".join(f"line_{i} = {i}" for i in range(200)) + "\n```"
    blocks = [Block("heading", "S", 2), _para(20), Block("code", code), _para(20, "after")]
    chunks = chunk_blocks(blocks, base_path=["G"], budget=100, min_tokens=10)
    assert sum(code in c.text for c in chunks) == 1
    assert all(c.text.count("```") % 2 == 0 for c in chunks)


def test_tiny_sections_are_merged_with_their_neighbour() -> None:
    blocks = [Block("heading", "A", 2), Block("text", "Short."), Block("heading", "B", 2), _para(30)]
    chunks = chunk_blocks(blocks, base_path=["G"], budget=200, min_tokens=20)
    assert len(chunks) == 1
    assert "## A" in chunks[0].text and "## B" in chunks[0].text


def test_overlap_repeats_trailing_prose_of_previous_chunk() -> None:
    blocks = [Block("heading", "S", 2)] + [_para(30, f"p{i}x") for i in range(6)]
    chunks = chunk_blocks(blocks, base_path=["G"], budget=100, min_tokens=10, overlap_tokens=50)
    assert len(chunks) > 1
    last_of_first = chunks[0].text.split("\n\n")[-1]
    assert chunks[1].text.startswith(last_of_first)


def test_very_long_paragraph_is_split_into_pieces_under_budget() -> None:
    sentence = "This sentence talks about buckets and objects. "
    chunks = chunk_blocks([Block("text", sentence * 400)], base_path=["G"], budget=64, min_tokens=8)
    assert len(chunks) > 10
    assert all(c.token_estimate <= 64 for c in chunks)


def test_chunk_ids_are_stable_and_depend_on_doc_key() -> None:
    data = b"# T\n\n" + b"\n\n".join(b"Paragraph %d has some words in it." % i for i in range(50))
    cfg = IngestConfig(chunk_tokens=64, min_chunk_tokens=8)
    a = process_document(data, doc_key="s3/a.md", doc_version="1", service="s3", config=cfg)
    b = process_document(data, doc_key="s3/a.md", doc_version="2", service="s3", config=cfg)
    c = process_document(data, doc_key="s3/c.md", doc_version="1", service="s3", config=cfg)
    assert isinstance(a, Processed) and isinstance(b, Processed) and isinstance(c, Processed)
    ids = [x.chunk_id for x in a.chunks]
    assert len(set(ids)) == len(ids) > 1
    assert ids == [x.chunk_id for x in b.chunks]
    assert not set(ids) & {x.chunk_id for x in c.chunks}
    assert [x.position for x in a.chunks] == list(range(len(ids)))


def test_token_estimate_counts_cjk_characters_individually() -> None:
    assert estimate_tokens("버킷" * 100) >= 200
    assert 20 <= estimate_tokens("word " * 20) <= 40
