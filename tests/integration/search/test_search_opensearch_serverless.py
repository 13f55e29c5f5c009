"""OpenSearch Serverless (``aoss``) rules over the emulator in Serverless mode.

What AWS documents for Serverless and the adapter must respect: no ``_refresh``
API (writes become searchable on the service's own schedule, seconds later), no
control of ``refresh_interval`` or shard count, no scroll or point in time;
index templates and aliases are supported. The emulator's clock is a fake one,
moved by hand or by the adapter's ``sleep``, so the delay is crossed without
waiting.
"""

from __future__ import annotations

import json

import pytest

from docllm.adapters.aws.opensearch import OpenSearchIndex, index_settings
from docllm.exceptions import TransientError
from docllm.ports.search import IndexedChunk
from tests.support.opensearch_emulator import OpenSearchEmulator

REFRESH_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def chunks(doc_key: str, n: int, text: str = "bucket policy") -> list[IndexedChunk]:
    return [
        IndexedChunk(chunk_id=f"c{i}", doc_key=doc_key, service="s3", title="T", heading_path=["T"], text=f"{text} {i}")
        for i in range(n)
    ]


def serverless(**kwargs: object) -> tuple[OpenSearchEmulator, OpenSearchIndex, FakeClock]:
    clock = FakeClock()
    emulator = OpenSearchEmulator(serverless=True, refresh_interval_s=REFRESH_S, clock=clock)
    index = OpenSearchIndex(
        client=emulator.client(),
        signing_service="aoss",
        sleep=clock.advance,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )
    return emulator, index, clock


def paths(emulator: OpenSearchEmulator) -> list[str]:
    return [path for _, path, _, _ in emulator.requests]


def test_serverless_template_leaves_refresh_interval_and_shards_to_the_service() -> None:
    emulator, index, _ = serverless()
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 1))
    settings = emulator.indices["docllm-chunks-v1"].settings
    assert "refresh_interval" not in settings and "number_of_shards" not in settings
    assert settings["analysis"] == index_settings()["analysis"]  # the same analysis chain as on a domain


def test_serverless_writes_never_call_refresh_and_become_searchable_later() -> None:
    emulator, index, clock = serverless()
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 2))
    assert not any(p.endswith("_refresh") for p in paths(emulator))
    assert index.search("bucket", k=10) == []  # no read-your-writes on Serverless
    clock.advance(REFRESH_S)
    assert len(index.search("bucket", k=10)) == 2
    assert index.document_versions() == {"s3/a.md": "v1"}


def test_serverless_replacements_inside_one_refresh_window_leave_no_orphan_chunks() -> None:
    emulator, index, clock = serverless()
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 5, "legacy"))
    # v1 is not searchable yet, so a search for its chunks finds none: the record must name them.
    index.replace_document("s3/a.md", "v2", chunks("s3/a.md", 2, "fresh"))
    index.replace_document("s3/b.md", "v1", chunks("s3/b.md", 3, "other"))
    index.delete_document("s3/b.md")
    clock.advance(REFRESH_S)
    assert index.search("legacy", k=10) == []
    docs = emulator.indices["docllm-chunks-v1"].docs.values()  # what searches now see
    assert sorted((d["doc_key"], d.get("chunk_id", ""), d["version"]) for d in docs) == [
        ("s3/a.md", "", "v2"),
        ("s3/a.md", "c0", "v2"),
        ("s3/a.md", "c1", "v2"),
    ]


def test_serverless_idempotency_sees_a_version_not_yet_searchable() -> None:
    emulator, index, _ = serverless()
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 2))
    bulks = sum(p.endswith("_bulk") for p in paths(emulator))
    index.replace_document("s3/a.md", "v1", chunks("s3/a.md", 2))  # redelivery within the window
    assert sum(p.endswith("_bulk") for p in paths(emulator)) == bulks


def test_serverless_reindex_swaps_the_alias_only_once_the_new_index_counts_every_document() -> None:
    emulator, index, clock = serverless(poll_s=3.0)
    index.replace_document("s3/old.md", "v1", chunks("s3/old.md", 2, "legacy"))
    clock.advance(REFRESH_S)
    started = clock.now
    new = index.reindex_all([("s3/new.md", "v9", chunks("s3/new.md", 3, "fresh"))])
    assert new == "docllm-chunks-v2"
    assert emulator.aliases["docllm-chunks"] == {"docllm-chunks-v2"}
    assert clock.now - started >= REFRESH_S  # it polled _count (3 s apart) until all 4 documents counted
    counts = [p for p in paths(emulator) if p.endswith("_count")]
    assert counts and set(counts) == {"/docllm-chunks-v2/_count"}
    assert not any(p.endswith("_refresh") for p in paths(emulator))
    assert {h.doc_key for h in index.search("fresh", k=10)} == {"s3/new.md"}  # searchable at the swap


def test_serverless_reindex_that_never_becomes_searchable_keeps_the_old_alias() -> None:
    emulator, index, _ = serverless(searchable_timeout_s=30.0)
    index.replace_document("s3/old.md", "v1", chunks("s3/old.md", 1))
    emulator.refresh_interval_s = 1e9  # the service never catches up
    with pytest.raises(TransientError, match="not swapped"):
        index.reindex_all([("s3/new.md", "v9", chunks("s3/new.md", 1))], delete_old=True)
    assert emulator.aliases["docllm-chunks"] == {"docllm-chunks-v1"}
    assert "docllm-chunks-v1" in emulator.indices


def test_the_emulator_in_serverless_mode_has_no_refresh_api() -> None:
    emulator, index, _ = serverless()
    index.ensure_index()
    status, body = emulator.handle("POST", "/docllm-chunks/_refresh", {}, None)
    assert status == 404, json.dumps(body)
