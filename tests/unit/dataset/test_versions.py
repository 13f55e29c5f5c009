from __future__ import annotations

import json

import pytest

from docllm.dataset.exceptions import DatasetNotFoundError, EmptyDatasetError
from docllm.dataset.versions import (
    assign_split,
    build_dataset,
    diff_manifests,
    list_datasets,
    load_manifest,
)
from tests.unit.dataset.fakes import DictObjects, DictState, add_document


def _corpus(n: int = 12) -> tuple[DictState, DictObjects]:
    state, objects = DictState(), DictObjects()
    for i in range(n):
        service = "s3" if i % 2 else "ec2"
        add_document(state, objects, f"{service}/doc{i}.md", [f"# Doc {i}\n\ntext {i}", f"more {i}"], service=service)
    return state, objects


def test_rebuild_without_new_documents_gives_same_version_and_writes_nothing() -> None:
    state, objects = _corpus()
    first, created = build_dataset(state, objects, artifact_bucket="art")
    puts = len(objects.puts)
    second, created_again = build_dataset(state, objects, artifact_bucket="art")
    assert created and not created_again
    assert second.version == first.version
    assert len(objects.puts) == puts


def test_adding_one_document_makes_new_version_whose_diff_names_it() -> None:
    state, objects = _corpus()
    first, _ = build_dataset(state, objects, artifact_bucket="art")
    add_document(state, objects, "s3/new.md", ["brand new"])
    second, created = build_dataset(state, objects, artifact_bucket="art")
    assert created and second.version != first.version
    assert second.previous_version == first.version
    assert second.diff.added == ["s3/new.md"]
    assert second.diff.removed == [] and second.diff.changed == []
    before = {d.doc_key: d.split for d in first.documents}
    after = {d.doc_key: d.split for d in second.documents if d.doc_key in before}
    assert after == before


def test_changed_and_removed_documents_are_named_in_diff() -> None:
    state, objects = _corpus()
    first, _ = build_dataset(state, objects, artifact_bucket="art")
    add_document(state, objects, "s3/doc1.md", ["rewritten"], revision="v2")
    rec = state.get("docs", "ec2/doc0.md")
    assert rec is not None
    state.put("docs", "ec2/doc0.md", {**rec, "status": "removed"})
    second, _ = build_dataset(state, objects, artifact_bucket="art")
    assert second.diff.changed == ["s3/doc1.md"]
    assert second.diff.removed == ["ec2/doc0.md"]
    assert diff_manifests(first, second) == second.diff


def test_only_processed_documents_of_requested_services_are_frozen() -> None:
    state, objects = _corpus(6)
    add_document(state, objects, "s3/dup.md", ["dup"], status="duplicate")
    manifest, _ = build_dataset(state, objects, artifact_bucket="art", services=["s3"])
    keys = [d.doc_key for d in manifest.documents]
    assert keys and all(k.startswith("s3/") for k in keys)
    assert "s3/dup.md" not in keys
    assert manifest.services == ["s3"]
    assert set(manifest.stats.per_service) == {"s3"}


def test_split_files_hold_every_chunk_of_their_documents_in_order() -> None:
    state, objects = _corpus(30)
    manifest, _ = build_dataset(state, objects, artifact_bucket="art")
    seen: dict[str, tuple[str, list[str]]] = {}
    for split in ("train", "validation", "test"):
        raw = objects.get("art", f"datasets/{manifest.version}/{split}.jsonl").decode()
        rows = [json.loads(line) for line in raw.splitlines()]
        for row in rows:
            seen.setdefault(row["doc_key"], (split, []))[1].append(row["chunk_id"])
    for doc in manifest.documents:
        assert seen[doc.doc_key] == (doc.split, doc.chunk_ids)
    assert sum(c.chunks for c in manifest.stats.per_split.values()) == manifest.stats.chunks


def test_split_depends_on_document_key_only() -> None:
    keys = [f"svc/page{i}.md" for i in range(2000)]
    splits = [assign_split(k) for k in keys]
    assert splits == [assign_split(k) for k in keys]
    share_test = splits.count("test") / len(splits)
    assert 0.03 < share_test < 0.07
    assert 0.03 < splits.count("validation") / len(splits) < 0.07


def test_summaries_are_listed_and_manifest_loads() -> None:
    state, objects = _corpus()
    m1, _ = build_dataset(state, objects, artifact_bucket="art")
    add_document(state, objects, "s3/x.md", ["x"])
    m2, _ = build_dataset(state, objects, artifact_bucket="art")
    assert [s.version for s in list_datasets(state)] == [m1.version, m2.version]
    assert load_manifest(objects, "art", m2.version) == m2
    assert list_datasets(state)[1].added == 1


def test_missing_manifest_is_a_typed_error() -> None:
    with pytest.raises(DatasetNotFoundError):
        load_manifest(DictObjects(), "art", "ds-nope")


def test_no_processed_documents_is_a_clear_error() -> None:
    with pytest.raises(EmptyDatasetError):
        build_dataset(DictState(), DictObjects(), artifact_bucket="art")


def test_unreadable_chunks_are_skipped_and_recorded() -> None:
    state, objects = _corpus(4)
    objects.delete("processed", "chunks/s3/doc1.md.jsonl")
    manifest, _ = build_dataset(state, objects, artifact_bucket="art")
    assert [s.doc_key for s in manifest.skipped] == ["s3/doc1.md"]
    assert "s3/doc1.md" not in {d.doc_key for d in manifest.documents}
