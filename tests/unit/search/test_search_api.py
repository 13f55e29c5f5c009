from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from docllm.exceptions import PermanentError
from docllm.ports.search import IndexedChunk
from docllm.search.api import SearchQuery, run_search
from docllm.search.exceptions import UnknownServiceError
from docllm.search.sqlite_index import SqliteSearchIndex


@pytest.mark.parametrize("q", ["", "   ", "x" * 513, "bucket\x00", "line\nbreak"])
def test_bad_queries_are_rejected(q: str) -> None:
    with pytest.raises(ValidationError):
        SearchQuery(q=q)


@pytest.mark.parametrize("k", [0, 101])
def test_k_outside_one_to_a_hundred_is_rejected(k: int) -> None:
    with pytest.raises(ValidationError):
        SearchQuery(q="bucket", k=k)


def test_unknown_service_is_a_permanent_typed_error(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path)
    with pytest.raises(UnknownServiceError) as info:
        run_search(index, SearchQuery(q="bucket", service="nope"))
    assert isinstance(info.value, PermanentError)


def test_response_echoes_the_query_and_carries_the_hits(tmp_path: Path) -> None:
    index = SqliteSearchIndex(tmp_path)
    index.replace_document(
        "s3/a.md",
        "v1",
        [
            IndexedChunk(
                chunk_id="c",
                doc_key="s3/a.md",
                service="s3",
                title="Buckets",
                heading_path=[],
                text="bucket rules",
            )
        ],
    )
    response = run_search(index, SearchQuery(q=" bucket ", k=3, service="s3"))
    assert (response.query, response.k, response.service) == ("bucket", 3, "s3")
    assert [h.chunk_id for h in response.hits] == ["c"]
    assert response.took_ms >= 0
