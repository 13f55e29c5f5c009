"""Request bodies of the OpenSearch hybrid path (BM25 + k-NN fused by RRF); a real cluster is not needed here."""

from __future__ import annotations

import json

from docllm.adapters.aws.opensearch import (
    EMBEDDING_FIELD,
    embedding_mapping,
    hybrid_query_body,
    hybrid_search_pipeline,
    index_mappings,
    search_body,
)


def test_hybrid_query_holds_the_bm25_query_and_a_filtered_knn_clause() -> None:
    body = hybrid_query_body("Can I rename a bucket?", [0.6, 0.8], k=10, service="s3", depth=100)
    lexical, knn = body["query"]["hybrid"]["queries"]
    # The lexical side is exactly the BM25-only query (same fields, boosts and filters).
    assert lexical == search_body("Can I rename a bucket?", k=100, service="s3")["query"]
    clause = knn["knn"][EMBEDDING_FIELD]
    assert clause["vector"] == [0.6, 0.8] and clause["k"] == 100
    assert clause["filter"] == {"bool": {"filter": [{"term": {"kind": "chunk"}}, {"term": {"service": "s3"}}]}}
    assert body["size"] == 10
    assert set(body["_source"]) == {"chunk_id", "doc_key", "service", "title", "heading_path", "text"}
    # Hybrid queries reject a top-level sort; the pipeline orders by fused score.
    assert "sort" not in body
    json.dumps(body)  # plain JSON: numpy floats would not serialise


def test_hybrid_query_without_service_filters_chunks_only() -> None:
    import numpy as np

    body = hybrid_query_body("bucket", np.array([1.0, 0.0], dtype=np.float32), k=5, service=None)
    clause = body["query"]["hybrid"]["queries"][1]["knn"][EMBEDDING_FIELD]
    assert clause["filter"] == {"bool": {"filter": [{"term": {"kind": "chunk"}}]}}
    assert all(type(x) is float for x in clause["vector"])
    json.dumps(body)


def test_pipeline_fuses_by_reciprocal_rank_like_the_embedded_engine() -> None:
    from docllm.search.fusion import RRF_K

    proc = hybrid_search_pipeline(dense_weight=2.0)["phase_results_processors"][0]["score-ranker-processor"]
    assert proc["combination"]["technique"] == "rrf"
    assert proc["combination"]["rank_constant"] == RRF_K
    assert proc["combination"]["parameters"]["weights"] == [1.0, 2.0]


def test_embedding_field_is_a_cosine_hnsw_vector_not_yet_in_the_strict_mapping() -> None:
    field = embedding_mapping(256)[EMBEDDING_FIELD]
    assert field["type"] == "knn_vector" and field["dimension"] == 256
    assert field["method"]["space_type"] == "innerproduct"  # unit vectors: inner product = cosine
    assert EMBEDDING_FIELD not in index_mappings()["properties"]
