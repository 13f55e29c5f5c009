"""OpenSearch specifics over the emulator.

Template, bulk byte limits, 429 backoff, blue/green reindex, lazy SigV4 client.
"""

from __future__ import annotations

import json

import boto3
import pytest
from opensearchpy import OpenSearch

from docllm.adapters.aws.opensearch import OpenSearchIndex, index_template
from docllm.exceptions import ConfigurationError, TransientError
from docllm.ports.search import IndexedChunk
from docllm.search.opensearch_emulator import OpenSearchEmulator


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
