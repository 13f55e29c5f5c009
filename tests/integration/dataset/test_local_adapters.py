"""Dataset builds on the local adapters (SQLite state, directory object store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.dataset.versions import build_dataset, list_datasets, load_manifest
from tests.unit.dataset.fakes import add_document


def test_build_is_idempotent_and_diffs_on_local_adapters(tmp_path: Path) -> None:
    state_mod = pytest.importorskip("docllm.adapters.local.state")
    objects_mod = pytest.importorskip("docllm.adapters.local.objects")
    state = state_mod.SqliteStateStore(tmp_path / "state.db")
    objects = objects_mod.LocalObjectStore(tmp_path / "objects")
    for bucket in ("processed", "artifacts"):
        objects.create_bucket(bucket)
    for i in range(8):
        add_document(state, objects, f"s3/p{i}.md", [f"page {i}", f"more {i}"])
    first, created = build_dataset(state, objects, artifact_bucket="artifacts")
    again, created_again = build_dataset(state, objects, artifact_bucket="artifacts")
    assert created and not created_again and again.version == first.version
    add_document(state, objects, "s3/new.md", ["new"])
    second, _ = build_dataset(state, objects, artifact_bucket="artifacts")
    assert second.diff.added == ["s3/new.md"]
    assert [s.version for s in list_datasets(state)] == [first.version, second.version]
    assert load_manifest(objects, "artifacts", second.version).version == second.version
