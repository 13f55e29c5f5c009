"""``GET /v1/search?group_by=document``: k distinct documents, each with its best chunks (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from docllm.api import routes
from docllm.runtime.http import Request, proxy_event
from tests.unit.answers.fakes import small_index
from tests.unit.api.test_error_responses import HANDLER, Context


class Platform:
    def __init__(self, tmp_path: Path) -> None:
        self.search_reader = small_index(tmp_path)


@pytest.fixture(autouse=True)
def _platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    platform = Platform(tmp_path)
    monkeypatch.setattr(routes, "build_platform", lambda: platform)


def get(target: str) -> tuple[int, dict[str, Any]]:
    event = proxy_event("GET", "/v1/search", Request("GET", target, {"host": "api"}, b"", "127.0.0.1"))
    result = HANDLER(event, Context())
    return result["statusCode"], json.loads(result["body"])


def test_grouped_hits_name_each_document_once() -> None:
    status, body = get("/v1/search?q=versioning+object+bucket&k=2&group_by=document")
    assert status == 200 and body["group_by"] == "document"
    keys = [d["doc_key"] for d in body["documents"]]
    assert len(keys) == 2 and len(set(keys)) == 2 and keys[0] == "s3/Versioning.md"
    assert [h["chunk_id"] for h in body["hits"]] == [h["chunk_id"] for d in body["documents"] for h in d["hits"]]
    assert body["documents"][0]["score"] == body["documents"][0]["hits"][0]["score"]


def test_ungrouped_search_keeps_its_shape() -> None:
    status, body = get("/v1/search?q=versioning")
    assert status == 200 and set(body) == {"query", "k", "service", "hits", "took_ms"}


def test_an_unknown_grouping_is_400() -> None:
    status, body = get("/v1/search?q=versioning&group_by=page")
    assert status == 400 and "group_by" in body["message"]
