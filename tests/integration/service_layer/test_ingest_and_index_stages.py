"""The ingest and index stages on the local platform: every document ends in one state, once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from docllm.runtime.local import LocalRuntime, sqs_event
from docllm.service_layer.ingest import load_record
from tests.conftest import REPO

DOC = "# Title {n}\n\n## Section\n\nDistinct words for document {n}: " + " ".join(f"tok{{n}}w{i}" for i in range(60))


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(tmp_path, template=REPO / "template.yaml", port=0, auth=False)
    runtime.start()
    yield runtime
    runtime.stop()


def put(rt: LocalRuntime, key: str, text: str) -> str:
    info = rt.platform.objects.put(rt.platform.settings.raw_bucket, key, text.encode())
    assert rt.wait_idle(30)
    return info.version_id or info.etag


def uploads_of(rt: LocalRuntime, key: str) -> list:
    return [e for e in rt.platform.event_log.last(50) if e.body.get("detail", {}).get("object", {}).get("key") == key]


def indexed_keys(rt: LocalRuntime, query: str) -> list[str]:
    return [h.doc_key for h in rt.platform.search.search(query, k=20)]


def test_an_overwrite_replaces_the_documents_chunks_in_store_and_index(rt):
    put(rt, "s/a.md", "# A\n\n## One\n\nalpha bravo charlie " * 5)
    v2 = put(rt, "s/a.md", "# A\n\n## Two\n\ndelta echo foxtrot " * 5)
    record = load_record(rt.platform, "s/a.md")
    assert record.version_id == v2 and record.status == "processed"
    assert indexed_keys(rt, "foxtrot") == ["s/a.md"] and indexed_keys(rt, "charlie") == []
    assert rt.platform.search.document_versions()["s/a.md"] == v2


def test_an_overwrite_that_is_quarantined_takes_the_old_chunks_out_of_the_index(rt):
    put(rt, "s/b.md", "# B\n\n## One\n\ngolf hotel india " * 5)
    put(rt, "s/b.md", "")
    record = load_record(rt.platform, "s/b.md")
    assert (record.status, record.reason_code) == ("quarantined", "empty")
    assert indexed_keys(rt, "hotel") == []


def test_the_same_bytes_under_a_new_version_keep_the_chunks_and_move_the_index_to_that_version(rt):
    text = DOC.format(n=1)
    put(rt, "s/c.md", text)
    before = rt.platform.event_log.last(1)[0].seq
    v2 = put(rt, "s/c.md", text)
    after = [e.detail_type for e in rt.platform.event_log.since(before)]
    assert after == ["Object Created", "Document Processed", "Document Indexed"]
    record = load_record(rt.platform, "s/c.md")
    assert record.version_id == v2 and record.status == "processed"
    assert rt.platform.search.document_versions()["s/c.md"] == v2
    assert indexed_keys(rt, "tok1w7") == ["s/c.md"]


def test_a_redelivered_object_event_is_processed_once(rt):
    put(rt, "s/d.md", DOC.format(n=2))
    (created,) = uploads_of(rt, "s/d.md")
    before = rt.platform.event_log.last(1)[0].seq
    fn = rt.wiring.functions["IngestFunction"]
    q = rt.platform.local_queue
    q.send("IngestQueue", json.dumps(created.body))  # the same event, delivered again
    assert rt.wait_idle(30)
    assert [e.detail_type for e in rt.platform.event_log.since(before)] == []
    assert fn.name == "IngestFunction"


def test_a_stale_event_for_a_replaced_version_does_nothing(rt):
    put(rt, "s/e.md", DOC.format(n=3))
    (first,) = uploads_of(rt, "s/e.md")
    v2 = put(rt, "s/e.md", DOC.format(n=4))
    handler = rt.handlers["IngestFunction"]
    from docllm.ports.queue import Message

    msg = Message(message_id="m-stale", body=json.dumps(first.body), receipt="r", receive_count=1, sent_at_ms=0)
    from docllm.runtime.local import LocalContext

    response = handler(sqs_event("IngestQueue", [msg]), LocalContext("IngestFunction", 60))
    assert response == {"batchItemFailures": []}
    assert load_record(rt.platform, "s/e.md").version_id == v2


def test_a_later_upload_whose_key_sorts_first_supersedes_an_identical_earlier_one(rt):
    text = DOC.format(n=5)
    put(rt, "s/zz.md", text)
    put(rt, "s/aa.md", text)
    zz, aa = load_record(rt.platform, "s/zz.md"), load_record(rt.platform, "s/aa.md")
    assert (aa.status, zz.status, zz.duplicate_of) == ("processed", "duplicate", "s/aa.md")
    assert indexed_keys(rt, "tok5w7") == ["s/aa.md"]


def test_deleting_a_document_removes_it_and_a_second_delete_event_changes_nothing(rt):
    put(rt, "s/f.md", DOC.format(n=6))
    rt.platform.objects.delete(rt.platform.settings.raw_bucket, "s/f.md")
    assert rt.wait_idle(30)
    assert load_record(rt.platform, "s/f.md").status == "removed"
    assert indexed_keys(rt, "tok6w3") == []


def test_a_document_whose_text_holds_unicode_line_separators_is_indexed(rt):
    put(rt, "s/sep.md", "# Sep\n\n## Part\n\nline one\u2028line two\u2029para \x0c feed " + "sepword " * 20)
    assert load_record(rt.platform, "s/sep.md").status == "processed"
    assert indexed_keys(rt, "sepword") == ["s/sep.md"]
    assert all(q.dead == 0 for q in (rt.platform.local_queue.stats(n) for n in rt.platform.local_queue.queues))


def test_an_upload_over_the_size_limit_is_quarantined_from_its_head_without_processing(rt, tmp_path):
    from docllm.ingest.pipeline import IngestConfig

    big = tmp_path / "big.md"
    with big.open("wb") as f:
        f.truncate(IngestConfig().max_bytes + 1)  # sparse: a 50 MiB + 1 byte upload costs no real I/O here
    rt.platform.objects.put_file(rt.platform.settings.raw_bucket, "s/big.md", big)
    assert rt.wait_idle(60)
    record = load_record(rt.platform, "s/big.md")
    assert (record.status, record.reason_code, record.sha256) == ("quarantined", "too_large", None)
    assert "limit" in record.reason


def test_a_benchmark_uploaded_to_the_raw_bucket_is_never_ingested_as_a_document(rt):
    # Benchmarks hold expected answers: as documents they would leak into training data and the index.
    body = json.dumps({"prompt": "The maximum object size is", "expected": "benchmarkanswer 5 TB"})
    put(rt, "benchmarks/x.jsonl", body + "\n")
    put(rt, "benchmarks/x.jsonl", body + "\n" + body + "\n")
    rt.platform.objects.delete(rt.platform.settings.raw_bucket, "benchmarks/x.jsonl")
    assert rt.wait_idle(30)
    assert load_record(rt.platform, "benchmarks/x.jsonl") is None
    events = uploads_of(rt, "benchmarks/x.jsonl")
    assert len(events) == 3 and all(e.targets == [] for e in events)  # the rule routed none to the ingest queue
    assert indexed_keys(rt, "benchmarkanswer") == []


def test_the_ingest_stage_itself_refuses_a_benchmark_event_that_reaches_it(rt):
    # Belt and braces: an event replayed or routed by an edited rule still records nothing.
    from docllm.service_layer.ingest import handle_object_event

    put(rt, "benchmarks/y.jsonl", '{"prompt": "p", "expected": "e"}\n')
    (created,) = uploads_of(rt, "benchmarks/y.jsonl")  # the S3 event, which no rule routed
    result = handle_object_event(rt.platform, created.body)
    assert (result.outcome, result.detail) == ("ignored", "not a document: benchmarks/ holds evaluation benchmarks")
    assert load_record(rt.platform, "benchmarks/y.jsonl") is None
