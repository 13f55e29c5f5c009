"""The OpenSearch adapter's hybrid path (issue 18) over the emulator: what it sends, and when it does not.

With the platform's gated encoder (``encoder_source``), a managed-domain index is created *for* that
encoder's version: the chunk documents carry its vectors and version, the search is the ``hybrid``
body (BM25 + k-NN) sent with ``?search_pipeline=docllm-hybrid-rrf``, and the pipeline is put once.
Without an encoder, and on Serverless, every request is exactly today's BM25 one. An index built for
encoder A is never hybrid-queried with encoder B: BM25 answers until a blue/green reindex builds B's.

What the emulator proves and what it cannot: it checks every request as the REST API defines it
(mapping of the ``knn_vector`` field, vector lengths, the pipeline's processor, a ``hybrid`` query
only at the top level and only with a stored pipeline) and executes the search with **exact**
inner-product k-NN and the documented weighted reciprocal-rank formula. Only a real cluster can
prove the recall of OpenSearch's HNSW graph (approximate, per segment and shard), the RRF
processor's exact scores and tie-breaking across shards, that the service accepts these bodies on
the version deployed (``score-ranker-processor`` and ``pagination_depth`` need 2.19+, per-query
weights 3.x), and the latency of encoding plus a hybrid query.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import numpy as np
import pytest

from docllm.adapters.aws.opensearch import (
    EMBEDDING_FIELD,
    ENCODER_VERSION_FIELD,
    HYBRID_PIPELINE,
    OpenSearchIndex,
    hybrid_query_body,
    search_body,
)
from docllm.ports.search import IndexedChunk
from docllm.search.encoder import EncoderCard, EncoderSettings, TextEncoder
from tests.support.opensearch_emulator import OpenSearchEmulator

WORDS = ["bucket", "storage", "function", "runtime", "alarm", "metric", "queue", "versioning"]
PIPELINE_PATH = f"/_search/pipeline/{HYBRID_PIPELINE}"


class WordTokenizer:
    """One id per known word (unknown words have no piece): a stand-in for SentencePiece."""

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [[WORDS.index(w) for w in re.findall(r"\w+", t.lower()) if w in WORDS] for t in texts]


def encoder(version: str | None, dim: int = 8) -> TextEncoder:
    """'bucket'/'storage', 'function'/'runtime', 'alarm'/'metric' share a direction; ``dim`` wide."""
    emb = np.zeros((len(WORDS), dim), dtype=np.float32)
    emb[[0, 1], 0] = 1.0
    emb[[2, 3], 1] = 1.0
    emb[[4, 5], 2] = 1.0
    emb[6, 3] = 1.0
    emb[7, 4] = 1.0
    card = None
    if version is not None:
        card = EncoderCard(
            version=version,
            dataset_version="ds-1",
            tokenizer_version="tok-1",
            tokenizer_sha256="0" * 64,
            encoder_sha256="0" * 64,
            settings=EncoderSettings(dim=dim),
            vocab_size=len(WORDS),
            train_documents=1,
        )
    return TextEncoder(WordTokenizer(), emb, np.zeros(len(WORDS), dtype=np.float32), card=card)


class Source:
    """An ``encoder_source`` whose answer a test switches, counting the calls."""

    def __init__(self, current: TextEncoder | None) -> None:
        self.current = current
        self.calls = 0

    def __call__(self) -> TextEncoder | None:
        self.calls += 1
        return self.current


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chunk(doc_key: str, n: int, text: str, service: str = "s3") -> IndexedChunk:
    return IndexedChunk(
        chunk_id=f"{doc_key}#{n}", doc_key=doc_key, service=service, title="T", heading_path=["T"], text=text
    )


DOCS: list[tuple[str, str, list[IndexedChunk]]] = [
    ("s3/a.md", "v1", [chunk("s3/a.md", 0, "Create a bucket."), chunk("s3/a.md", 1, "Enable versioning.")]),
    ("lambda/b.md", "v1", [chunk("lambda/b.md", 0, "Set the function runtime.", service="lambda")]),
    ("cw/c.md", "v1", [chunk("cw/c.md", 0, "An alarm on a metric.", service="cloudwatch")]),
]


def writer(emulator: OpenSearchEmulator, source: Source | None, **kwargs: Any) -> OpenSearchIndex:
    return OpenSearchIndex(client=emulator.client(), encoder_source=source, **kwargs)


def fill(index: OpenSearchIndex) -> None:
    for doc_key, version, chunks in DOCS:
        index.replace_document(doc_key, version, chunks)


def bulk_sources(emulator: OpenSearchEmulator, since: int = 0) -> list[dict[str, Any]]:
    """The ``_source`` of every ``index`` action of the bulks sent since request ``since``."""
    out = []
    for _, path, _, body in emulator.requests[since:]:
        if path.endswith("_bulk"):
            lines = body.splitlines()
            out += [json.loads(lines[i + 1]) for i, line in enumerate(lines) if "index" in json.loads(line)]
    return out


def searches(emulator: OpenSearchEmulator, since: int = 0) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(params, body)`` of the ranking searches (not the id lookups, which sort by a keyword)."""
    out = []
    for _, path, params, body in emulator.requests[since:]:
        if path == "/docllm-chunks/_search":
            parsed = json.loads(body)
            if "hybrid" in parsed["query"] or "must" in parsed["query"].get("bool", {}):
                out.append((params, parsed))
    return out


def pipeline_puts(emulator: OpenSearchEmulator) -> int:
    return sum(1 for method, path, _, _ in emulator.requests if (method, path) == ("PUT", PIPELINE_PATH))


# -- what is sent ----------------------------------------------------------------------------------
def test_index_requests_carry_vectors_of_the_encoders_width_and_its_version() -> None:
    emulator = OpenSearchEmulator()
    enc = encoder("enc-a", dim=8)
    fill(writer(emulator, Source(enc)))

    # The physical index was created for enc-a: knn field of its width, the version in _meta.
    mappings = emulator.indices["docllm-chunks-v1"].mappings
    assert mappings["_meta"] == {"docllm": {"encoder_version": "enc-a", "embedding_dim": 8}}
    assert mappings["properties"][EMBEDDING_FIELD]["type"] == "knn_vector"
    assert mappings["properties"][EMBEDDING_FIELD]["dimension"] == 8
    assert mappings["properties"][ENCODER_VERSION_FIELD] == {"type": "keyword"}
    assert mappings["dynamic"] == "strict"  # the template's fields are all there too
    assert emulator.indices["docllm-chunks-v1"].settings["index.knn"] is True

    sources = bulk_sources(emulator)
    chunks = [s for s in sources if s["kind"] == "chunk"]
    assert len(chunks) == 4
    for s in chunks:
        assert s[ENCODER_VERSION_FIELD] == "enc-a"
        assert len(s[EMBEDDING_FIELD]) == 8
        assert np.linalg.norm(s[EMBEDDING_FIELD]) == pytest.approx(1.0, abs=1e-6)
    # The vectors are the passages' (title, headings, text), as the embedded index encodes them.
    bucket = next(s for s in chunks if s["text"] == "Create a bucket.")
    assert bucket[EMBEDDING_FIELD] == pytest.approx(enc.encode(["T\nCreate a bucket."])[0].tolist())
    # The kind=document records carry none.
    assert all(EMBEDDING_FIELD not in s for s in sources if s["kind"] == "document")


def test_search_is_the_hybrid_body_sent_with_the_pipeline() -> None:
    emulator = OpenSearchEmulator()
    enc = encoder("enc-a")
    index = writer(emulator, Source(enc))
    fill(index)
    since = len(emulator.requests)

    hits = index.search("storage", k=3, service="s3")

    ((params, body),) = searches(emulator, since)
    assert params == {"search_pipeline": HYBRID_PIPELINE}
    expected = hybrid_query_body(
        "storage", enc.encode(["storage"])[0].tolist(), k=3, service="s3", depth=100, encoder_version="enc-a"
    )
    assert body == expected
    # "storage" is in no chunk: BM25 alone finds nothing, the vector side ranks the bucket chunk first
    # (k-NN returns the k nearest, so the other s3 chunk follows, orthogonal as it is).
    assert [h.chunk_id for h in hits] == ["s3/a.md#0", "s3/a.md#1"]
    bm25 = OpenSearchIndex(client=emulator.client(), read_only=True)
    assert bm25.search("storage", k=3, service="s3") == []


def test_fusion_ranks_what_both_sides_find_first() -> None:
    emulator = OpenSearchEmulator()
    index = writer(emulator, Source(encoder("enc-a")))
    fill(index)
    index.replace_document("s3/d.md", "v1", [chunk("s3/d.md", 0, "Storage classes of a bucket.")])
    hits = index.search("bucket", k=5)
    # Both chunks with "bucket" are found by both sides, the others by the vector side alone; the
    # scores are weighted reciprocal ranks: 1/(60 + BM25 rank) + 0.25/(60 + k-NN rank).
    assert {h.chunk_id for h in hits[:2]} == {"s3/a.md#0", "s3/d.md#0"}
    assert hits[0].score in [pytest.approx(1 / 61 + 0.25 / 61), pytest.approx(1 / 61 + 0.25 / 62)]
    assert all(h.score <= 0.25 / 63 for h in hits[2:])


def test_the_pipeline_is_put_once_per_process_before_the_first_hybrid_index() -> None:
    emulator = OpenSearchEmulator()
    source = Source(encoder("enc-a"))
    index = writer(emulator, source)
    fill(index)
    index.search("bucket", k=3)
    index.reindex_all(DOCS)
    assert pipeline_puts(emulator) == 1
    methods_paths = [(m, p) for m, p, _, _ in emulator.requests]
    assert methods_paths.index(("PUT", PIPELINE_PATH)) < methods_paths.index(("PUT", "/docllm-chunks-v1"))
    stored = emulator.search_pipelines[HYBRID_PIPELINE]
    ranker = stored["phase_results_processors"][0]["score-ranker-processor"]["combination"]
    assert ranker["technique"] == "rrf" and ranker["rank_constant"] == 60
    assert ranker["parameters"]["weights"] == [1.0, 0.25]  # the embedded engine's HYBRID_RANKING
    # Another process (a new writer) puts it again: the PUT is idempotent.
    writer(emulator, source).replace_document("s3/a.md", "v2", DOCS[0][2])
    assert pipeline_puts(emulator) == 2


def test_the_reader_reads_the_layout_and_searches_only() -> None:
    emulator = OpenSearchEmulator()
    source = Source(encoder("enc-a"))
    fill(writer(emulator, source))
    since = len(emulator.requests)
    reader = OpenSearchIndex(client=emulator.client(), read_only=True, encoder_source=source)
    assert reader.search("runtime", k=3)[0].doc_key == "lambda/b.md"
    assert reader.search("metric", k=3)[0].doc_key == "cw/c.md"
    sent = [(m, p) for m, p, _, _ in emulator.requests[since:]]
    # One GET _mapping (the layout, then trusted for layout_ttl_s), then searches; nothing written.
    assert sent == [("GET", "/docllm-chunks/_mapping"), *[("POST", "/docllm-chunks/_search")] * 2]


# -- without an encoder nothing changes ------------------------------------------------------------
@pytest.mark.parametrize("source", [None, Source(None)], ids=["no source", "source answers None"])
def test_without_an_encoder_every_request_is_todays(source: Source | None) -> None:
    def run(with_source: Source | None) -> list[tuple[str, str, dict[str, Any], Any]]:
        emulator = OpenSearchEmulator()
        index = writer(emulator, with_source)
        fill(index)
        index.search("bucket", k=3, service="s3")
        index.reindex_all(DOCS)
        index.search("bucket", k=3)
        return emulator.requests

    assert run(source) == run(None)
    emulator = OpenSearchEmulator()
    fill(writer(emulator, source))
    assert pipeline_puts(emulator) == 0
    assert all(EMBEDDING_FIELD not in s for s in bulk_sources(emulator))
    assert "_meta" not in emulator.indices["docllm-chunks-v1"].mappings


def test_an_encoder_without_a_card_is_not_used() -> None:
    emulator = OpenSearchEmulator()
    index = writer(emulator, Source(encoder(None)))
    fill(index)
    index.search("bucket", k=3)
    assert pipeline_puts(emulator) == 0
    assert all(EMBEDDING_FIELD not in s for s in bulk_sources(emulator))
    assert all(params == {} for params, _ in searches(emulator))


# -- one encoder's index is never queried with another's ------------------------------------------
@pytest.mark.parametrize("dim_b", [8, 12], ids=["same width", "other width"])
def test_an_index_built_with_a_is_not_hybrid_queried_with_b(dim_b: int, caplog: pytest.LogCaptureFixture) -> None:
    emulator = OpenSearchEmulator()
    source = Source(encoder("enc-a", dim=8))
    index = writer(emulator, source, layout_ttl_s=0.0)
    fill(index)

    source.current = encoder("enc-b", dim=dim_b)  # the gate approved another encoder
    since = len(emulator.requests)
    with caplog.at_level(logging.WARNING, logger="docllm.adapters.aws.opensearch"):
        hits = index.search("bucket", k=3)
        index.search("bucket", k=3)
        index.replace_document("s3/e.md", "v1", [chunk("s3/e.md", 0, "Bucket storage.")])
    assert [h.doc_key for h in hits] == ["s3/a.md"]
    # BM25 alone: today's body, no pipeline; and B's vectors are not written into A's index.
    assert [(params, body) for params, body in searches(emulator, since)] == [
        ({}, search_body("bucket", k=3, service=None))
    ] * 2
    assert all(EMBEDDING_FIELD not in s for s in bulk_sources(emulator, since))
    stale = [r for r in caplog.records if "the active encoder is enc-b" in r.getMessage()]
    assert len(stale) == 1 and "holds vectors of enc-a" in stale[0].getMessage()

    # The blue/green reindex builds B's index; from then on the search is hybrid with B.
    new = index.reindex_all([*DOCS, ("s3/e.md", "v1", [chunk("s3/e.md", 0, "Bucket storage.")])])
    assert emulator.indices[new].mappings["_meta"]["docllm"] == {"encoder_version": "enc-b", "embedding_dim": dim_b}
    since = len(emulator.requests)
    index.search("storage", k=3)
    ((params, body),) = searches(emulator, since)
    assert params == {"search_pipeline": HYBRID_PIPELINE}
    knn = body["query"]["hybrid"]["queries"][1]["knn"][EMBEDDING_FIELD]
    assert len(knn["vector"]) == dim_b
    assert {"term": {ENCODER_VERSION_FIELD: "enc-b"}} in knn["filter"]["bool"]["filter"]


def test_a_reader_behind_an_alias_swap_falls_back_to_bm25_once_then_follows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator = OpenSearchEmulator()
    clock = FakeClock()
    fill(writer(emulator, Source(encoder("enc-a", dim=8))))
    reader_source = Source(encoder("enc-a", dim=8))
    reader = OpenSearchIndex(
        client=emulator.client(), read_only=True, encoder_source=reader_source, clock=clock, layout_ttl_s=5.0
    )
    assert reader.search("storage", k=3)[0].doc_key == "s3/a.md"  # hybrid; layout A cached

    # An operator rebuilds the index for B (another width); this reader still has A and its cached layout.
    writer(emulator, Source(encoder("enc-b", dim=12))).reindex_all(DOCS)
    since = len(emulator.requests)
    with caplog.at_level(logging.WARNING, logger="docllm.adapters.aws.opensearch"):
        hits = reader.search("bucket", k=3)
    assert [h.doc_key for h in hits] == ["s3/a.md"]  # answered by BM25 after the 400
    sent = searches(emulator, since)
    assert [params for params, _ in sent] == [{"search_pipeline": HYBRID_PIPELINE}, {}]
    assert any("answered with BM25 alone" in r.getMessage() for r in caplog.records)

    # Its layout is read again: B's index, A's encoder: BM25 until its own source moves to B.
    since = len(emulator.requests)
    reader.search("bucket", k=3)
    assert [params for params, _ in searches(emulator, since)] == [{}]
    reader_source.current = encoder("enc-b", dim=12)
    since = len(emulator.requests)
    assert reader.search("storage", k=3)[0].doc_key == "s3/a.md"
    assert [params for params, _ in searches(emulator, since)] == [{"search_pipeline": HYBRID_PIPELINE}]


def test_a_chunk_with_no_known_piece_has_no_vector_and_is_found_by_bm25() -> None:
    emulator = OpenSearchEmulator()
    index = writer(emulator, Source(encoder("enc-a")))
    index.replace_document("iam/x.md", "v1", [chunk("iam/x.md", 0, "Grant s3:PutObject.", service="iam")])
    (source,) = [s for s in bulk_sources(emulator) if s["kind"] == "chunk"]
    assert EMBEDDING_FIELD not in source and ENCODER_VERSION_FIELD not in source
    assert [h.doc_key for h in index.search("PutObject", k=3)] == ["iam/x.md"]


# -- Serverless -----------------------------------------------------------------------------------
def test_serverless_keeps_bm25_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    emulator = OpenSearchEmulator(serverless=True, refresh_interval_s=0.0)
    source = Source(encoder("enc-a"))
    index = OpenSearchIndex(client=emulator.client(), signing_service="aoss", encoder_source=source)
    with caplog.at_level(logging.WARNING, logger="docllm.adapters.aws.opensearch"):
        fill(index)
        assert index.search("bucket", k=3)[0].doc_key == "s3/a.md"
        index.search("runtime", k=3)
    assert source.calls == 0  # the encoder is not even loaded
    assert pipeline_puts(emulator) == 0
    assert all(EMBEDDING_FIELD not in s for s in bulk_sources(emulator))
    assert all(params == {} for params, _ in searches(emulator))
    notes = [r for r in caplog.records if "OpenSearch Serverless" in r.getMessage()]
    assert len(notes) == 1 and "BM25 alone" in notes[0].getMessage()


def test_the_serverless_emulator_refuses_the_rrf_pipeline() -> None:
    from docllm.adapters.aws.opensearch import hybrid_search_pipeline

    body = json.dumps(hybrid_search_pipeline())
    assert OpenSearchEmulator(serverless=True).handle("PUT", PIPELINE_PATH, {}, body)[0] == 400
    assert OpenSearchEmulator().handle("PUT", PIPELINE_PATH, {}, body)[0] == 200


# -- the emulator checks what the real service checks ----------------------------------------------
def test_the_emulator_rejects_malformed_hybrid_requests() -> None:
    emulator = OpenSearchEmulator()
    enc = encoder("enc-a")
    fill(writer(emulator, Source(enc)))
    vector = enc.encode(["bucket"])[0].tolist()
    good = hybrid_query_body("bucket", vector, k=3, service=None)

    def status(body: dict[str, Any], params: dict[str, Any]) -> int:
        return emulator.handle("POST", "/docllm-chunks/_search", params, json.dumps(body))[0]

    pipeline = {"search_pipeline": HYBRID_PIPELINE}
    assert status(good, pipeline) == 200
    assert status(good, {}) == 400  # a hybrid query with nothing to fuse it
    assert status(good, {"search_pipeline": "nope"}) == 400  # "Pipeline nope is not defined"
    short = hybrid_query_body("bucket", vector[:4], k=3, service=None)
    assert status(short, pipeline) == 400  # query vector of the wrong dimension
    nested = {"size": 3, "query": {"bool": {"must": [good["query"]]}}}
    assert status(nested, pipeline) == 400  # hybrid only at the top level

    # A vector of the wrong length is a per-item mapper error in a bulk.
    doc = {"kind": "chunk", "chunk_id": "x", "doc_key": "x", EMBEDDING_FIELD: [1.0, 0.0], ENCODER_VERSION_FIELD: "a"}
    raw = json.dumps({"index": {"_index": "docllm-chunks-v1", "_id": "x"}}) + "\n" + json.dumps(doc) + "\n"
    code, response = emulator.handle("POST", "/_bulk", {}, raw)
    assert code == 200 and response["errors"]
    assert response["items"][0]["index"]["error"]["type"] == "mapper_parsing_exception"


def test_bootstrap_gives_both_opensearch_indexes_the_platforms_encoder_source() -> None:
    from docllm.bootstrap import Platform
    from docllm.service_layer.retriever import ActiveEncoder
    from docllm.settings import Settings

    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "aws", "DOCLLM_SEARCH_ENDPOINT": "https://search-x.es.amazonaws.com"})
    )
    for index in (platform.search, platform.search_reader):
        assert isinstance(index, OpenSearchIndex)
        assert isinstance(index._encoder_source, ActiveEncoder)
