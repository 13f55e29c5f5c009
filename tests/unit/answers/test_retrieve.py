"""Retrieval groups chunks by document and refuses questions the documents do not cover."""

from __future__ import annotations

from pathlib import Path

from docllm.answers.retrieve import CHUNKS_PER_DOCUMENT, MIN_COVERAGE, coverage, question_terms, retrieve
from docllm.ports.search import SearchHit
from tests.unit.answers.fakes import lead_below_details_index, small_index


def test_documents_are_distinct_and_ranked_by_their_best_chunk(tmp_path: Path) -> None:
    result = retrieve(small_index(tmp_path), "How do I enable versioning on a bucket?", k=3)
    keys = [d.doc_key for d in result.documents]
    assert keys[0] == "s3/Versioning.md"
    assert len(keys) == len(set(keys))
    assert [d.score for d in result.documents] == sorted((d.score for d in result.documents), reverse=True)
    assert result.documents[0].chunks[0].chunk_id == "s3/Versioning.md#0"


def test_chunks_carry_the_indexed_document_version(tmp_path: Path) -> None:
    result = retrieve(small_index(tmp_path), "enable versioning bucket")
    assert result.documents[0].version_id == "v-s3/Versioning.md"
    assert result.documents[0].chunks[0].version_id == "v-s3/Versioning.md"


def test_an_answerable_question_is_covered(tmp_path: Path) -> None:
    result = retrieve(small_index(tmp_path), "How do I enable versioning on a bucket?")
    assert result.covered and result.coverage == 1.0


def test_an_off_topic_question_is_not_covered(tmp_path: Path) -> None:
    result = retrieve(small_index(tmp_path), "How do I bake sourdough bread at home?")
    assert not result.covered


def test_a_question_sharing_one_word_with_a_page_is_not_covered(tmp_path: Path) -> None:
    # "objects" is on the pages; Kubernetes, pods and autoscaling are not.
    result = retrieve(small_index(tmp_path), "How do I autoscale Kubernetes pods holding objects?")
    assert result.documents and result.coverage < MIN_COVERAGE and not result.covered


def test_a_question_of_question_words_only_is_not_covered_and_searches_nothing(tmp_path: Path) -> None:
    result = retrieve(small_index(tmp_path), "How can I do what you would?")
    assert result.question_terms == [] and result.documents == [] and not result.covered


def test_question_and_generic_words_do_not_count_as_content() -> None:
    assert question_terms("How can I get Amazon S3 Versioning in AWS?") == ["s3", "version"]


def test_an_identifier_keeps_its_whole_term_when_its_verb_is_a_question_word() -> None:
    assert "s3:getobject" in question_terms("How do I get s3:GetObject?")


def test_coverage_counts_title_and_headings() -> None:
    hit = SearchHit(
        chunk_id="c", doc_key="d", service="s3", title="Lifecycle", heading_path=["Expiration"], text="x", score=1
    )
    assert coverage(["lifecycl", "expir", "glacier"], [hit]) == 2 / 3


def test_the_service_filter_restricts_documents(tmp_path: Path) -> None:
    result = retrieve(small_index(tmp_path), "role permission policies identity", service="s3")
    assert all(d.service == "s3" for d in result.documents)


def test_a_documents_further_candidate_chunks_are_kept_apart_and_do_not_count_for_coverage(tmp_path: Path) -> None:
    result = retrieve(lead_below_details_index(tmp_path), "What is S3 Transfer Acceleration?")
    page = result.documents[0]
    assert len(page.chunks) == CHUNKS_PER_DOCUMENT and len(page.spare) == 4 - CHUNKS_PER_DOCUMENT
    assert page.spare[-1].chunk_id == "s3/transfer-acceleration.md#0"  # the lead, scored last
    assert page.coverage == coverage(result.question_terms, page.chunks)
