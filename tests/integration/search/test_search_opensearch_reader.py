"""The API's OpenSearch index is read-only: it never writes a template, alias, mapping or index.

On OpenSearch Serverless the API role only has ``aoss:ReadDocument`` and
``aoss:DescribeIndex``; one ``PUT _index_template`` from a search would be a
403 there. Every request the reader sends is checked here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from docllm.adapters.aws.opensearch import OpenSearchIndex
from docllm.bootstrap import Platform
from docllm.exceptions import ConfigurationError
from docllm.ports.search import IndexedChunk
from docllm.settings import Settings
from tests.support.opensearch_emulator import OpenSearchEmulator


def chunk(doc_key: str, n: int, text: str, service: str = "s3") -> IndexedChunk:
    return IndexedChunk(
        chunk_id=f"{doc_key}#{n}", doc_key=doc_key, service=service, title="T", heading_path=["T"], text=text
    )


def reader_requests(emulator: OpenSearchEmulator, since: int) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _, _ in emulator.requests[since:]]


def only_searches(requests: list[tuple[str, str]]) -> bool:
    return all(method in ("GET", "POST") and path.endswith("/_search") for method, path in requests)


@pytest.mark.parametrize("signing_service", ["es", "aoss"])
def test_reader_searches_without_writing_anything(signing_service: str) -> None:
    emulator = OpenSearchEmulator(serverless=signing_service == "aoss", refresh_interval_s=0.0)
    writer = OpenSearchIndex(client=emulator.client(), signing_service=signing_service)
    writer.replace_document("s3/a.md", "v1", [chunk("s3/a.md", 0, "Enable bucket versioning.")])
    writer.replace_document("iam/b.md", "v1", [chunk("iam/b.md", 0, "Grant s3:PutObject.", service="iam")])
    since = len(emulator.requests)

    reader = OpenSearchIndex(client=emulator.client(), signing_service=signing_service, read_only=True)
    assert reader.search("bucket versioning", k=5)[0].doc_key == "s3/a.md"
    assert reader.search("PutObject", k=5, service="iam")[0].doc_key == "iam/b.md"
    assert reader.services() == {"s3", "iam"}
    assert reader.document_versions() == {"s3/a.md": "v1", "iam/b.md": "v1"}

    requests = reader_requests(emulator, since)
    assert requests and only_searches(requests), requests


def test_reader_on_a_collection_nothing_was_indexed_into_answers_empty_and_creates_nothing() -> None:
    emulator = OpenSearchEmulator(serverless=True)
    reader = OpenSearchIndex(client=emulator.client(), signing_service="aoss", read_only=True)
    assert reader.search("bucket") == []
    assert reader.services() == set()
    assert reader.document_versions() == {}
    assert emulator.templates == {} and emulator.indices == {} and emulator.aliases == {}
    assert only_searches(reader_requests(emulator, 0))


def test_reader_refuses_every_write() -> None:
    emulator = OpenSearchEmulator()
    reader = OpenSearchIndex(client=emulator.client(), read_only=True)
    with pytest.raises(ConfigurationError, match="read-only"):
        reader.replace_document("s3/a.md", "v1", [chunk("s3/a.md", 0, "x")])
    with pytest.raises(ConfigurationError, match="read-only"):
        reader.delete_document("s3/a.md")
    with pytest.raises(ConfigurationError, match="read-only"):
        reader.ensure_index()
    with pytest.raises(ConfigurationError, match="read-only"):
        reader.reindex_all([])
    assert emulator.requests == []


def test_writer_reads_do_not_create_the_index_either() -> None:
    emulator = OpenSearchEmulator()
    writer = OpenSearchIndex(client=emulator.client())
    assert writer.search("bucket") == []
    assert writer.document_versions() == {}
    assert emulator.templates == {} and emulator.indices == {}


def aws_platform() -> Platform:
    return Platform(
        Settings.from_env(
            {"DOCLLM_BACKEND": "aws", "DOCLLM_SEARCH_ENDPOINT": "https://abc.eu-west-1.aoss.amazonaws.com"}
        )
    )


def test_bootstrap_gives_the_api_a_read_only_index_and_the_indexer_a_writer() -> None:
    platform = aws_platform()
    reader, writer = platform.search_reader, platform.search
    assert isinstance(reader, OpenSearchIndex) and isinstance(writer, OpenSearchIndex)
    assert reader.read_only and not writer.read_only
    assert reader.serverless and writer.serverless  # DOCLLM_SEARCH_SERVICE defaults to aoss


def api_event(path: str, query: dict[str, str]) -> dict[str, Any]:
    raw_query = "&".join(f"{k}={v}" for k, v in query.items())
    return {
        "version": "2.0",
        "routeKey": f"GET {path}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": {"host": "api.example"},
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "test",
            "domainName": "api.example",
            "domainPrefix": "api",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": ""},
            "requestId": "r-1",
            "routeKey": f"GET {path}",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "body": None,
        "isBase64Encoded": False,
    }


class _ApiPlatform:
    """Only what the search and status routes touch; ``search`` (the writer) must stay unused."""

    def __init__(self, reader: OpenSearchIndex) -> None:
        self.search_reader = reader

    @property
    def search(self) -> OpenSearchIndex:
        raise AssertionError("the API must use the read-only search_reader")

    @property
    def state(self) -> Any:
        class _State:
            def query(self, pk: str) -> list[Any]:
                return []

        return _State()


def test_the_api_routes_search_through_the_read_only_index(monkeypatch: pytest.MonkeyPatch) -> None:
    from docllm.api import routes

    emulator = OpenSearchEmulator(serverless=True, refresh_interval_s=0.0)
    writer = OpenSearchIndex(client=emulator.client(), signing_service="aoss")
    writer.replace_document("s3/a.md", "v1", [chunk("s3/a.md", 0, "Enable bucket versioning.")])
    since = len(emulator.requests)
    reader = OpenSearchIndex(client=emulator.client(), signing_service="aoss", read_only=True)
    monkeypatch.setattr(routes, "build_platform", lambda: _ApiPlatform(reader))

    found = routes.app.resolve(api_event("/v1/search", {"q": "versioning", "k": "3"}), None)
    assert found["statusCode"] == 200, found
    assert [h["doc_key"] for h in json.loads(found["body"])["hits"]] == ["s3/a.md"]
    status = routes.app.resolve(api_event("/v1/status", {}), None)
    assert status["statusCode"] == 200, status
    assert json.loads(status["body"])["indexed_documents"] == 1
    assert only_searches(reader_requests(emulator, since))
