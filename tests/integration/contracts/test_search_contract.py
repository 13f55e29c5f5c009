"""One behaviour, two adapters: the embedded index and OpenSearch (over the in-process emulator)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from docllm.adapters.aws.opensearch import OpenSearchIndex
from docllm.adapters.local.search import open_local_index
from docllm.ports.search import IndexedChunk, SearchIndex
from tests.support.opensearch_emulator import OpenSearchEmulator


def chunk(doc_key: str, n: int, text: str, service: str = "s3", title: str = "Guide") -> IndexedChunk:
    return IndexedChunk(
        chunk_id=f"{doc_key}#{n}",
        doc_key=doc_key,
        service=service,
        title=title,
        heading_path=[title, f"Section {n}"],
        text=text,
    )


@pytest.fixture(params=["local", "opensearch"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SearchIndex]:
    if request.param == "local":
        local = open_local_index(tmp_path)
        yield local
        local.close()
    else:
        emulator = OpenSearchEmulator()
        client = OpenSearch(hosts=[{"host": "emulated", "port": 9200}], connection_class=emulator.connection_class())
        yield OpenSearchIndex(client=client, sleep=lambda _: None)


def seed(index: SearchIndex) -> None:
    index.replace_document(
        "s3/versioning.md",
        "v1",
        [
            chunk("s3/versioning.md", 0, "Enable versioning on a bucket to keep every object version."),
            chunk("s3/versioning.md", 1, "Suspended versioning stores a null version id."),
        ],
    )
    index.replace_document(
        "iam/policies.md",
        "v1",
        [
            chunk(
                "iam/policies.md",
                0,
                "Grant s3:PutObject in an identity policy attached to a role.",
                service="iam",
            ),
        ],
    )
    index.replace_document(
        "lambda/timeout.md",
        "v1",
        [
            chunk(
                "lambda/timeout.md",
                0,
                "Raise the function timeout with --timeout in the CLI.",
                service="lambda",
            ),
        ],
    )


def test_search_finds_the_chunk_that_mentions_the_terms(index: SearchIndex) -> None:
    seed(index)
    hits = index.search("bucket versioning", k=5)
    assert hits and hits[0].doc_key == "s3/versioning.md"
    assert all(h.score > 0 for h in hits)
    assert hits == sorted(hits, key=lambda h: -h.score)


def test_identifier_query_matches_its_camel_case_parts(index: SearchIndex) -> None:
    seed(index)
    assert index.search("PutObject", k=3)[0].doc_key == "iam/policies.md"


def test_service_filter_keeps_only_that_service(index: SearchIndex) -> None:
    seed(index)
    assert {h.service for h in index.search("version policy timeout", k=10, service="iam")} == {"iam"}
    assert index.search("version", k=10, service="ec2") == []


def test_replace_swaps_every_chunk_of_the_document(index: SearchIndex) -> None:
    seed(index)
    index.replace_document("s3/versioning.md", "v2", [chunk("s3/versioning.md", 0, "Object lock retention modes.")])
    assert index.search("suspended null", k=5) == []
    hits = index.search("retention", k=5)
    assert [h.chunk_id for h in hits] == ["s3/versioning.md#0"]
    assert hits[0].text == "Object lock retention modes."
    assert index.document_versions()["s3/versioning.md"] == "v2"


def test_the_same_version_with_the_same_chunk_ids_again_is_a_no_op(index: SearchIndex) -> None:
    seed(index)
    # Chunk ids are content-addressed: the same ids are the same chunks (a redelivery), whatever is sent.
    redelivered = [chunk("s3/versioning.md", n, "Different text entirely.") for n in (0, 1)]
    index.replace_document("s3/versioning.md", "v1", redelivered)
    assert index.search("different entirely", k=5) == []
    assert {h.chunk_id for h in index.search("versioning", k=10, service="s3")} == {
        "s3/versioning.md#0",
        "s3/versioning.md#1",
    }


def test_the_same_version_with_other_chunks_replaces_them(index: SearchIndex) -> None:
    seed(index)
    # A document processed again at the same version (boilerplate it held became, or stopped being, boilerplate).
    index.replace_document("s3/versioning.md", "v1", [chunk("s3/versioning.md", 7, "Object lock retention modes.")])
    assert [h.chunk_id for h in index.search("retention", k=5)] == ["s3/versioning.md#7"]
    assert index.search("suspended null", k=5) == []


def test_delete_removes_the_document_and_its_chunks(index: SearchIndex) -> None:
    seed(index)
    index.delete_document("lambda/timeout.md")
    index.delete_document("never/indexed.md")
    assert index.search("timeout", k=5) == []
    assert "lambda/timeout.md" not in index.document_versions()
    assert index.services() == {"s3", "iam"}


def test_document_versions_and_services_describe_what_is_indexed(index: SearchIndex) -> None:
    assert index.document_versions() == {}
    assert index.services() == set()
    seed(index)
    assert index.document_versions() == {
        "s3/versioning.md": "v1",
        "iam/policies.md": "v1",
        "lambda/timeout.md": "v1",
    }
    assert index.services() == {"s3", "iam", "lambda"}


def test_a_document_with_no_chunks_is_recorded_but_never_found(index: SearchIndex) -> None:
    index.replace_document("s3/empty.md", "v1", [])
    assert index.document_versions() == {"s3/empty.md": "v1"}
    assert index.search("anything", k=5) == []


def test_query_without_terms_returns_nothing(index: SearchIndex) -> None:
    seed(index)
    assert index.search("the of and", k=5) == []
