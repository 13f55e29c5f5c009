"""OpenSearch specifics over the emulator (managed-domain behaviour).

Template, bulk byte limits, 429 backoff, blue/green reindex, lazy SigV4 client,
uncapped chunk-id lookups, mapping upgrades. Serverless and the read-only API
index have their own files.
"""

from __future__ import annotations

import json

import boto3
import pytest
from opensearchpy import OpenSearch

from docllm.adapters.aws.opensearch import OpenSearchIndex, chunk_doc_id, document_doc_id, index_template
from docllm.exceptions import ConfigurationError, TransientError
from docllm.ports.search import IndexedChunk
from tests.support.opensearch_emulator import OpenSearchEmulator


def chunks(doc_key: str, n: int, text: str = "bucket policy") -> list[IndexedChunk]:
    return [
        IndexedChunk(chunk_id=f"c{i}", doc_key=doc_key, service="s3", title="T", heading_path=["T"], text=f"{text} {i}")
        for i in range(n)
    ]


def make(emulator: OpenSearchEmulator, **kwargs: object) -> tuple[OpenSearchIndex, list[float]]:
    sleeps: list[float] = []
    client = OpenSearch(hosts=[{"host": "emulated", "port": 9200}], connection_class=emulator.connection_class())
    return OpenSearchIndex(client=client, sleep=sleeps.append, **kwargs), sleeps  # type: ignore[arg-type]


def bulk_bodies(emulator: OpenSearchEmulator) -> list[str]:
    return [body for method, path, _, body in emulator.requests if path.endswith("_bulk")]


def test_first_use_creates_template_and_versioned_index_behind_the_alias() -> None:
    emulator = OpenSearchEmulator()
    index, _ = make(emulator)
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 1))
    assert emulator.aliases["docllm-chunks"] == {"docllm-chunks-v1"}
    settings = emulator.indices["docllm-chunks-v1"].settings
    assert settings["analysis"]["analyzer"]["docllm_english"]["tokenizer"] == "docllm_compound"
    assert settings["refresh_interval"] == "-1"


def test_template_is_rejected_when_it_references_an_undeclared_filter() -> None:
    emulator = OpenSearchEmulator()
    broken = index_template()
    broken["template"]["settings"]["analysis"]["analyzer"]["docllm_english"]["filter"].append("nope")
    status, _ = emulator.handle("PUT", "/_index_template/x", {}, json.dumps(broken))
    assert status == 400


def test_bulk_bodies_stay_under_the_byte_limit() -> None:
    emulator = OpenSearchEmulator(max_content_length=4000)
    index, _ = make(emulator, max_bulk_bytes=4000)
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 30, "bucket " + "padding " * 30))
    bodies = bulk_bodies(emulator)
    assert len(bodies) > 1
    assert all(len(b.encode()) <= 4000 for b in bodies)
    assert len(index.search("bucket", k=50)) == 30


def test_throttled_bulk_is_retried_with_exponential_backoff() -> None:
    emulator = OpenSearchEmulator()
    index, sleeps = make(emulator, backoff_s=0.1)
    index.ensure_index()
    emulator.throttle_bulks = 2
    emulator.throttle_items = 1
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 3))
    assert sleeps == [0.1, 0.2, 0.4]
    assert index.document_versions() == {"s3/a.md": "v1"}
    assert len(index.search("bucket", k=10)) == 3


def test_endless_throttling_becomes_a_transient_error() -> None:
    emulator = OpenSearchEmulator()
    index, sleeps = make(emulator, max_retries=2)
    index.ensure_index()
    emulator.throttle_bulks = 10
    with pytest.raises(TransientError):
        index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 1))
    assert len(sleeps) == 2


def test_reindex_all_builds_the_next_version_and_swaps_the_alias() -> None:
    emulator = OpenSearchEmulator()
    index, _ = make(emulator)
    index.replace_document("s3/old.md", "v1", chunks("s3/old.md", 2, "legacy"))
    new = index.reindex_all([("s3/new.md", "v9", chunks("s3/new.md", 2, "fresh"))])
    assert new == "docllm-chunks-v2"
    assert emulator.aliases["docllm-chunks"] == {"docllm-chunks-v2"}
    assert "docllm-chunks-v1" not in emulator.indices
    assert index.document_versions() == {"s3/new.md": "v9"}
    assert index.search("legacy", k=5) == []
    swaps = [json.loads(b) for m, p, _, b in emulator.requests if p == "/_aliases"]
    assert swaps[-1]["actions"] == [
        {"remove": {"index": "docllm-chunks-v1", "alias": "docllm-chunks"}},
        {"add": {"index": "docllm-chunks-v2", "alias": "docllm-chunks"}},
    ]


def test_no_client_is_built_until_first_use() -> None:
    index = OpenSearchIndex(endpoint="https://search-x.eu-west-1.es.amazonaws.com", region="eu-west-1")
    assert index._client is None
    with pytest.raises(ConfigurationError):
        OpenSearchIndex()


def test_lazy_client_signs_with_sigv4_for_the_chosen_service() -> None:
    session = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x", region_name="eu-west-1")
    index = OpenSearchIndex(
        endpoint="https://abc.eu-west-1.aoss.amazonaws.com", signing_service="aoss", session=session
    )
    auth = index.client.transport.kwargs["http_auth"]
    assert auth.service == "aoss"
    assert auth.signer.region == "eu-west-1"


def search_bodies(emulator: OpenSearchEmulator) -> list[dict[str, object]]:
    return [json.loads(body) for method, path, _, body in emulator.requests if path.endswith("_search")]


def stored_chunk_ids(emulator: OpenSearchEmulator, doc_key: str) -> set[str]:
    docs = emulator.indices["docllm-chunks-v1"].docs
    return {d["chunk_id"] for d in docs.values() if d["kind"] == "chunk" and d["doc_key"] == doc_key}


def forget_recorded_chunk_ids(emulator: OpenSearchEmulator, doc_key: str) -> None:
    """Make the record look like one written before ``chunk_ids`` existed: only a search finds the chunks."""
    index = emulator.indices["docllm-chunks-v1"]
    record = index.docs[document_doc_id(doc_key)]
    index.docs[document_doc_id(doc_key)] = {k: v for k, v in record.items() if k != "chunk_ids"}


def test_replace_finds_every_old_chunk_beyond_one_page_of_the_id_lookup() -> None:
    emulator = OpenSearchEmulator()
    index, _ = make(emulator, page_size=3)
    index.replace_document("s3/big.md", "v1", chunks("s3/big.md", 8))
    forget_recorded_chunk_ids(emulator, "s3/big.md")  # the search_after pages alone must find all 8
    index.replace_document("s3/big.md", "v2", chunks("s3/big.md", 2)[:1])
    assert stored_chunk_ids(emulator, "s3/big.md") == {"c0"}
    lookups = [b for b in search_bodies(emulator) if b.get("sort") == [{"chunk_id": "asc"}]]
    assert [b["size"] for b in lookups] == [3, 3, 3, 3]  # v1's first write found nothing; then 3 + 3 + 2
    assert ["search_after" in b for b in lookups[1:]] == [False, True, True]
    assert index.document_versions() == {"s3/big.md": "v2"}


def test_delete_removes_every_chunk_beyond_one_page_of_the_id_lookup() -> None:
    emulator = OpenSearchEmulator()
    index, _ = make(emulator, page_size=2)
    index.replace_document("s3/big.md", "v1", chunks("s3/big.md", 7))
    index.replace_document("s3/other.md", "v1", chunks("s3/other.md", 1))
    forget_recorded_chunk_ids(emulator, "s3/big.md")
    index.delete_document("s3/big.md")
    assert stored_chunk_ids(emulator, "s3/big.md") == set()
    assert stored_chunk_ids(emulator, "s3/other.md") == {"c0"}
    assert index.document_versions() == {"s3/other.md": "v1"}


def test_document_versions_pages_past_the_page_size() -> None:
    emulator = OpenSearchEmulator()
    index, _ = make(emulator, page_size=2)
    for n in range(5):
        index.replace_document(f"s3/{n}.md", "v1", chunks(f"s3/{n}.md", 1))
    assert index.document_versions() == {f"s3/{n}.md": "v1" for n in range(5)}


def test_the_record_lists_the_chunk_ids_of_its_version() -> None:
    emulator = OpenSearchEmulator()
    index, _ = make(emulator)
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 3))
    record = emulator.indices["docllm-chunks-v1"].docs[document_doc_id("s3/a.md")]
    assert record == {"kind": "document", "doc_key": "s3/a.md", "version": "v1", "chunk_ids": ["c0", "c1", "c2"]}
    assert chunk_doc_id("s3/a.md", "c0") in emulator.indices["docllm-chunks-v1"].docs


def test_an_index_from_before_chunk_ids_gets_the_field_added_then_takes_writes() -> None:
    emulator = OpenSearchEmulator()
    old = index_template()
    del old["template"]["mappings"]["properties"]["chunk_ids"]
    assert emulator.handle("PUT", "/_index_template/docllm-chunks", {}, json.dumps(old))[0] == 200
    assert emulator.handle("PUT", "/docllm-chunks-v1", {}, json.dumps({"aliases": {"docllm-chunks": {}}}))[0] == 200
    index, _ = make(emulator)
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 2))
    assert "chunk_ids" in emulator.indices["docllm-chunks-v1"].mappings["properties"]
    assert index.document_versions() == {"s3/a.md": "v1"}


def test_domain_writes_refresh_after_each_document() -> None:
    emulator = OpenSearchEmulator()
    index, _ = make(emulator)
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 2))
    assert [p for _, p, _, _ in emulator.requests if p.endswith("_refresh")] == ["/docllm-chunks-v1/_refresh"]
    assert len(index.search("bucket", k=10)) == 2  # read-your-writes on a domain
