"""The dedup lifecycle over the real ingest and index stages: whatever the sequence of uploads,
overwrites, deletes and quarantines, the index holds one copy of every distinct live content.

The stages run synchronously here (a small pump over the local queues, the same service-layer
functions the handlers call), so hypothesis can try many sequences quickly.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docllm.bootstrap import Platform
from docllm.ingest.dedup import DedupLedger
from docllm.service_layer import index, ingest
from docllm.settings import Settings
from tests.conftest import REPO

KEYS = ["s/a.md", "s/b.md", "s/c.md", "s/d.md"]
TOPICS = ["glacier vault retrieval", "lambda layer packaging", "bucket replication rules"]


def content(n: int) -> str:
    """Three documents with nothing in common (no near duplicates, no shared paragraphs)."""
    topic = TOPICS[n]
    words = " ".join(f"{topic.split()[0]}{n}w{i}" for i in range(80))
    return f"# {topic.title()}\n\n## Overview\n\nThis page explains {topic}. {words}\n"


EMPTY = ""  # quarantined: "empty"


def platform(tmp: Path) -> Platform:
    return Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp)}), template=REPO / "template.yaml"
    )


def pump(p: Platform) -> None:
    """Deliver every queued message to its stage until the ingest and index queues are empty."""
    q = p.local_queue
    stages = {"IngestQueue": ingest.handle_object_event, "IndexQueue": index.handle_document_event}
    while True:
        moved = 0
        for name, handle in stages.items():
            for m in q.receive(name, max_messages=10):
                handle(p, json.loads(m.body))
                q.delete(name, m.receipt)
                moved += 1
        if not moved:
            return


def upload(p: Platform, key: str, text: str) -> None:
    p.objects.put(p.settings.raw_bucket, key, text.encode())
    pump(p)


def delete(p: Platform, key: str) -> None:
    p.objects.delete(p.settings.raw_bucket, key)
    pump(p)


def expected_index(live: dict[str, str]) -> set[str]:
    """One copy of every distinct live content: the smallest key holding it."""
    by_content: dict[str, list[str]] = {}
    for key, text in live.items():
        if text != EMPTY:
            by_content.setdefault(text, []).append(key)
    return {min(keys) for keys in by_content.values()}


operation = st.tuples(st.sampled_from(KEYS), st.sampled_from(["put0", "put1", "put2", "quarantine", "delete"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=12))
def test_any_sequence_ends_with_one_indexed_copy_of_every_distinct_live_content(ops):
    with tempfile.TemporaryDirectory() as tmp:
        p = platform(Path(tmp))
        live: dict[str, str] = {}
        for key, op in ops:
            if op == "delete":
                if key in live:
                    delete(p, key)
                    del live[key]
                continue
            text = EMPTY if op == "quarantine" else content(int(op[-1]))
            upload(p, key, text)
            live[key] = text
        indexed = set(p.search.document_versions())
        assert indexed == expected_index(live), ops
        for key in indexed:  # each canonical holds its own content, at its current version
            head = p.objects.head(p.settings.raw_bucket, key)
            assert p.search.document_versions()[key] == (head.version_id or head.etag)
            topic = TOPICS[[content(i) for i in range(3)].index(live[key])]
            assert key in {h.doc_key for h in p.search.search(topic, k=10)}
        for key, text in live.items():  # every live document ends in a final state
            record = ingest.load_record(p, key)
            assert record is not None
            assert record.status == ("quarantined" if text == EMPTY else "processed" if key in indexed else "duplicate")


def test_removing_a_canonical_promotes_its_first_duplicate_and_logs_it(tmp_path):
    p = platform(tmp_path)
    for key in ["s/a.md", "s/b.md", "s/c.md"]:
        upload(p, key, content(0))
    assert set(p.search.document_versions()) == {"s/a.md"}
    delete(p, "s/a.md")
    assert set(p.search.document_versions()) == {"s/b.md"}
    b, c = ingest.load_record(p, "s/b.md"), ingest.load_record(p, "s/c.md")
    assert (b.status, b.duplicate_of, b.chunk_count > 0) == ("processed", None, True)
    assert (c.status, c.duplicate_of) == ("duplicate", "s/b.md")
    log = DedupLedger(p.state).log("s/b.md")
    assert [e.action for e in log if e.action == "promoted"] == ["promoted"]
    assert next(e for e in log if e.action == "promoted").duplicate_of == "s/a.md"


def test_quarantining_a_canonical_promotes_its_duplicate_and_clears_its_fingerprint(tmp_path):
    p = platform(tmp_path)
    upload(p, "s/a.md", content(1))
    upload(p, "s/b.md", content(1))
    upload(p, "s/a.md", EMPTY)
    assert set(p.search.document_versions()) == {"s/b.md"}
    assert DedupLedger(p.state).content_hash("s/a.md") is None
    # A later upload of the same content is judged against live documents only.
    upload(p, "s/c.md", content(1))
    assert ingest.load_record(p, "s/c.md").duplicate_of == "s/b.md"


def test_changing_a_canonicals_content_sets_its_duplicates_free(tmp_path):
    p = platform(tmp_path)
    upload(p, "s/a.md", content(2))
    upload(p, "s/b.md", content(2))
    upload(p, "s/a.md", content(0))
    assert set(p.search.document_versions()) == {"s/a.md", "s/b.md"}
    assert ingest.load_record(p, "s/b.md").status == "processed"


def test_a_same_bytes_reupload_of_a_duplicate_keeps_it_a_duplicate(tmp_path):
    p = platform(tmp_path)
    upload(p, "s/a.md", content(0))
    upload(p, "s/b.md", content(0))
    upload(p, "s/b.md", content(0))
    record = ingest.load_record(p, "s/b.md")
    assert (record.status, record.duplicate_of) == ("duplicate", "s/a.md")
    assert set(p.search.document_versions()) == {"s/a.md"}


SHARED = "To use this example, replace every placeholder value with one of your own before you run the command."


def with_boilerplate(n: int) -> str:
    words = " ".join(f"topic{n}w{i}" for i in range(60))
    return f"# Page {n}\n\n## Steps\n\n{SHARED}\n\nPage {n} explains {words}.\n"


def chunk_texts(p: Platform, key: str) -> str:
    return p.objects.get(p.settings.processed_bucket, ingest.chunks_key(key)).decode()


def test_boilerplate_does_not_depend_on_the_order_documents_arrive_in(tmp_path):
    p = platform(tmp_path)
    keys = [f"s/p{n}.md" for n in range(7)]
    for n, key in enumerate(keys):
        upload(p, key, with_boilerplate(n))
    # The fifth made the paragraph boilerplate: the four before it lose it too.
    assert [key for key in keys if SHARED in chunk_texts(p, key)] == []
    indexed = {h.doc_key for h in p.search.search("replace every placeholder value", k=20)}
    assert indexed.isdisjoint(keys)
    # Below the threshold again, every remaining document gets the paragraph back.
    for key in keys[:3]:
        delete(p, key)
    assert [key for key in keys[3:] if SHARED in chunk_texts(p, key)] == keys[3:]


def test_the_same_page_under_two_services_stays_findable_in_each_and_trains_once(tmp_path):
    from docllm.dataset.versions import build_dataset

    p = platform(tmp_path)
    p.objects.put(p.settings.raw_bucket, "s3/copy.md", content(0).encode(), metadata={"service": "s3"})
    p.objects.put(p.settings.raw_bucket, "lambda/copy.md", content(0).encode(), metadata={"service": "lambda"})
    pump(p)
    assert set(p.search.document_versions()) == {"s3/copy.md", "lambda/copy.md"}
    assert [h.doc_key for h in p.search.search("glacier vault", k=5, service="s3")] == ["s3/copy.md"]
    manifest, _ = build_dataset(p.state, p.objects, artifact_bucket=p.settings.artifact_bucket)
    assert [d.doc_key for d in manifest.documents] == ["lambda/copy.md"]
    assert [s.doc_key for s in manifest.skipped] == ["s3/copy.md"]
