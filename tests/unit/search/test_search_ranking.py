"""The lexical ranking options (docllm.search.ranking) and how the embedded index applies them."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.exceptions import ConfigurationError
from docllm.ports.search import IndexedChunk
from docllm.search.bm25 import BM25Scorer
from docllm.search.ranking import Ranking, aggregate_documents, query_terms, rm3_weights
from docllm.search.sqlite_index import SqliteSearchIndex, split_code, weighted_terms


def chunk(cid: str, doc: str, text: str, title: str = "Page") -> IndexedChunk:
    return IndexedChunk(chunk_id=cid, doc_key=doc, service="s3", title=title, heading_path=[], text=text)


def test_question_forms_drop_question_words_but_never_empty_the_query():
    assert query_terms("Can I rename a bucket?", Ranking()) == ["can", "i", "renam", "bucket"]
    assert query_terms("Can I rename a bucket?", Ranking(question_forms=True)) == ["renam", "bucket"]
    assert query_terms("how can I", Ranking(question_forms=True)) == ["how", "can", "i"]


def test_a_page_matching_in_several_chunks_beats_one_lucky_chunk():
    docs = {1: "lucky", 2: "broad", 3: "broad", 4: "broad"}
    ranked = [(1, 10.0), (2, 6.0), (3, 5.0), (4, 4.0)]
    assert [s for s, _ in aggregate_documents(ranked, docs.__getitem__, 0.0)] == [1, 2, 3, 4]
    assert [s for s, _ in aggregate_documents(ranked, docs.__getitem__, 0.5)] == [2, 3, 4, 1]


def test_rm3_keeps_the_original_weight_and_adds_the_best_feedback_terms():
    w = rm3_weights(
        ["a", "b"], [(3.0, {"a": 1.0, "x": 2.0, "y": 1.0}), (1.0, {"z": 1.0})], n_terms=2, original_weight=0.6
    )
    assert w["a"] == pytest.approx(0.3) and w["b"] == pytest.approx(0.3)
    assert set(w) == {"a", "b", "x", "z"} and sum(w.values()) == pytest.approx(1.0)
    assert rm3_weights(["a"], [], n_terms=5, original_weight=0.5) == {"a": 1.0}


def test_query_weights_scale_a_terms_contribution():
    s = BM25Scorer()
    s.add(1, {"x": 1.0}, length=1, group=0)
    s.add(2, {"y": 1.0}, length=1, group=0)
    assert [slot for slot, _ in s.top_k(["x", "y"], k=2, weights={"x": 0.1})] == [2, 1]


def test_four_weights_put_code_blocks_in_a_field_of_their_own():
    assert split_code("Run:\n```\naws s3 ls\n```\nDone.") == ("Run:\nDone.", "```\naws s3 ls\n```")
    assert split_code("```\ncut inside a block") == ("", "```\ncut inside a block")
    c = chunk("c", "d", "Listing:\n```\nlist buckets\n```")
    tf, _ = weighted_terms(c, (1.0, 1.0, 1.0, 0.5))
    assert tf["list"] == pytest.approx(1.5) and tf["bucket"] == pytest.approx(0.5)


def test_weights_are_three_or_four(tmp_path: Path):
    with pytest.raises(ConfigurationError):
        SqliteSearchIndex(tmp_path, weights=(1.0, 1.0))


def test_the_index_applies_its_ranking_options(tmp_path: Path):
    index = SqliteSearchIndex(tmp_path)
    index.replace_document("s3/lucky.md", "v1", [chunk("l1", "s3/lucky.md", "bucket rename bucket rename rules")])
    index.replace_document(
        "s3/broad.md",
        "v1",
        [chunk(f"b{i}", "s3/broad.md", f"bucket rename section {i} with more words about names") for i in range(3)],
    )
    assert index.search("how can I rename a bucket", k=10)[0].doc_key == "s3/lucky.md"
    index.ranking = Ranking(doc_aggregation=1.0)
    assert index.search("how can I rename a bucket", k=10)[0].doc_key == "s3/broad.md"
    index.ranking = Ranking(question_forms=True, prf_terms=3, prf_docs=2)
    hits = index.search("how can I rename a bucket", k=10)
    assert {h.doc_key for h in hits} == {"s3/lucky.md", "s3/broad.md"}
    index.close()
