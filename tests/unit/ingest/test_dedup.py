from __future__ import annotations

from itertools import count

import pytest

from docllm.ingest.dedup import apply_boilerplate, fingerprint, jaccard, minhash_signature
from docllm.ingest.pipeline import IngestConfig, Processed, process_document
from docllm.ingest.text import Block
from tests.unit.dataset.fakes import CommittingLedger
from tests.unit.dataset.fakes import DictState as DictStateStore


def _clock() -> str:
    ticks = count()
    return f"2024-01-01T00:00:{next(ticks):02d}"


def _doc(topic: str, extra: str = "") -> Processed:
    body = "\n\n".join(
        f"Paragraph {i} about {topic} explains how {topic} behaves in case number {i}." for i in range(12)
    )
    data = f"# {topic}\n\n{body}\n\n{extra}".encode()
    out = process_document(
        data,
        doc_key=f"s3/{topic}.md",
        doc_version="1",
        service="s3",
        config=IngestConfig(chunk_tokens=64, min_chunk_tokens=8),
    )
    assert isinstance(out, Processed)
    return out


@pytest.mark.parametrize("order", [("s3/a.md", "s3/b.md"), ("s3/b.md", "s3/a.md")])
def test_exact_duplicate_canonical_is_smallest_key_whatever_the_order(order: tuple[str, str]) -> None:
    ledger = CommittingLedger(DictStateStore(), clock=_clock)
    fp = _doc("buckets").fingerprint
    first = ledger.decide(order[0], "s3", fp)
    second = ledger.decide(order[1], "s3", fp)
    if order[0] == "s3/a.md":
        assert first.duplicate_of is None and second.duplicate_of == "s3/a.md"
    else:
        assert first.duplicate_of is None and second.duplicate_of is None
        assert second.supersedes == ["s3/b.md"]
    assert ledger.decide("s3/b.md", "s3", fp).duplicate_of == "s3/a.md"


def test_near_duplicate_is_detected_and_unrelated_document_is_not() -> None:
    ledger = CommittingLedger(DictStateStore(), near_dup_threshold=0.8, clock=_clock)
    base = _doc("lifecycle")
    tweaked = _doc("lifecycle", extra="One extra closing sentence.")
    other = _doc("replication")
    assert jaccard(base.fingerprint.minhash, tweaked.fingerprint.minhash) >= 0.8
    assert ledger.decide("s3/a.md", "s3", base.fingerprint).duplicate_of is None
    near = ledger.decide("s3/b.md", "s3", tweaked.fingerprint)
    assert near.duplicate_of == "s3/a.md" and near.similarity is not None and near.similarity < 1.0
    assert ledger.decide("s3/c.md", "s3", other.fingerprint).duplicate_of is None
    assert [e.action for e in ledger.log("s3/b.md")] == ["near_duplicate_document"]


def test_paragraph_becomes_boilerplate_once_in_enough_documents_of_a_service() -> None:
    ledger = CommittingLedger(DictStateStore(), boilerplate_min_docs=3, clock=_clock)
    shared = "To use this example, replace every placeholder with your own information."
    decisions = []
    for topic in ("alpha", "beta", "gamma"):
        doc = _doc(topic, extra=shared)
        decisions.append(ledger.decide(f"s3/{topic}.md", "s3", doc.fingerprint))
    assert not decisions[0].boilerplate_hashes and not decisions[1].boilerplate_hashes
    assert len(decisions[2].boilerplate_hashes) == 1
    # Another service does not share the count.
    assert not ledger.decide("iam/x.md", "iam", _doc("delta", extra=shared).fingerprint).boilerplate_hashes


def test_code_and_headings_never_count_as_boilerplate() -> None:
    fp = fingerprint(
        [
            Block("heading", "A heading repeated on every page", 2),
            Block("code", "```\nprint('the same long code sample everywhere')\n```"),
        ]
    )
    assert fp.paragraph_hashes == []


def test_apply_boilerplate_drops_paragraph_and_keeps_other_chunk_ids() -> None:
    ledger = CommittingLedger(DictStateStore(), boilerplate_min_docs=2, clock=_clock)
    shared = "Copyright notice repeated verbatim at the bottom of every single page."
    ledger.decide("s3/one.md", "s3", _doc("one", extra=shared).fingerprint)
    doc = _doc("two", extra=shared)
    decision = ledger.decide("s3/two.md", "s3", doc.fingerprint)
    cleaned = apply_boilerplate(doc, decision.boilerplate_hashes)
    assert all(shared not in c.text for c in cleaned.chunks)
    untouched = {c.chunk_id for c in doc.chunks if shared not in c.text}
    assert untouched <= {c.chunk_id for c in cleaned.chunks}
    assert [c.position for c in cleaned.chunks] == list(range(len(cleaned.chunks)))


def test_forget_removes_every_trace_and_redelivery_is_idempotent() -> None:
    state = DictStateStore()
    ledger = CommittingLedger(state, clock=_clock)
    fp = _doc("buckets").fingerprint
    assert ledger.decide("s3/b.md", "s3", fp).duplicate_of is None
    snapshot = {key: dict(v) for key, v in state.items.items() if key[0] != "dedup#log"}
    ledger.decide("s3/b.md", "s3", fp)
    assert {key: dict(v) for key, v in state.items.items() if key[0] != "dedup#log"} == snapshot
    # The document's own item goes with the caller's commit (the followups), so a crash before
    # that commit leaves the retry something to find.
    followups = ledger.forget("s3/b.md")
    assert ("dedup#doc", "s3/b.md") in state.items
    state.transact(followups.writes)
    assert [key for key in state.items if key[0] != "dedup#log"] == []


def test_log_is_queryable_per_document_and_in_full() -> None:
    ledger = CommittingLedger(DictStateStore(), clock=_clock)
    fp = _doc("buckets").fingerprint
    ledger.decide("s3/a.md", "s3", fp)
    ledger.decide("s3/b.md", "s3", fp)
    assert [(e.doc_key, e.action, e.duplicate_of) for e in ledger.log("s3/b.md")] == [
        ("s3/b.md", "duplicate_document", "s3/a.md")
    ]
    assert ledger.log("s3/a.md") == [] and len(ledger.log()) == 1


def test_minhash_ignores_case_and_whitespace_only_changes() -> None:
    text = "Amazon S3 stores objects in buckets and serves them over HTTPS. " * 10
    assert minhash_signature(text) == minhash_signature(text.upper().replace(" ", "  "))
