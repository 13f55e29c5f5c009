"""The dedup ledger on the local SQLite state adapter (the same decisions as the in-memory fake)."""

from __future__ import annotations

from pathlib import Path

from docllm.adapters.local.state import SqliteStateStore
from docllm.ingest.pipeline import Processed, process_document
from tests.unit.dataset.fakes import CommittingLedger


def _fp(text: str) -> Processed:
    out = process_document(text.encode(), doc_key="s3/x.md", doc_version="1", service="s3")
    assert isinstance(out, Processed)
    return out


def test_ledger_on_sqlite_finds_duplicates_and_survives_reopening(tmp_path: Path) -> None:
    body = "# Buckets\n\n" + "\n\n".join(f"Paragraph {i} explains bucket policy case {i} in detail." for i in range(10))
    fp = _fp(body).fingerprint
    ledger = CommittingLedger(SqliteStateStore(tmp_path / "state.db"))
    assert ledger.decide("s3/b.md", "s3", fp).duplicate_of is None
    reopened = CommittingLedger(SqliteStateStore(tmp_path / "state.db"))
    decision = reopened.decide("s3/a.md", "s3", fp)
    assert decision.duplicate_of is None and decision.supersedes == ["s3/b.md"]
    assert reopened.decide("s3/b.md", "s3", fp).duplicate_of == "s3/a.md"
    assert [e.action for e in reopened.log("s3/b.md")][-1] == "duplicate_document"
    reopened.forget("s3/a.md")
    assert reopened.decide("s3/b.md", "s3", fp).duplicate_of is None
