"""Datasets keep each document's raw object version for the manifest, without changing their version."""

from __future__ import annotations

import hashlib
import json

from docllm.dataset.versions import SPLIT_RULE, build_dataset
from docllm.records import DOCS_PK
from tests.unit.dataset.fakes import DictObjects, DictState, add_document


def _corpus() -> tuple[DictState, DictObjects]:
    state, objects = DictState(), DictObjects()
    for i in range(6):
        add_document(state, objects, f"s3/doc{i}.md", [f"# Doc {i}", f"text {i}"], revision=f"rev{i}")
    return state, objects


def test_each_document_records_the_object_version_it_was_read_from() -> None:
    state, objects = _corpus()
    manifest, _ = build_dataset(state, objects, artifact_bucket="art")
    assert {d.doc_key: d.version_id for d in manifest.documents} == {f"s3/doc{i}.md": f"rev{i}" for i in range(6)}


def test_the_version_is_the_content_hash_without_version_ids() -> None:
    state, objects = _corpus()
    manifest, _ = build_dataset(state, objects, artifact_bucket="art")
    payload = {
        "schema": 1,
        "family": None,
        "services": [],
        "split_rule": SPLIT_RULE.model_dump(),
        "documents": [[d.doc_key, d.sha256, d.chunk_ids] for d in manifest.documents],
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    assert manifest.version == "ds-" + hashlib.sha256(blob).hexdigest()[:16]


def test_the_same_content_under_a_new_object_version_is_the_same_dataset_version() -> None:
    state, objects = _corpus()
    first, _ = build_dataset(state, objects, artifact_bucket="art")
    for key, item in list(state.items.items()):
        if key[0] == DOCS_PK:
            state.items[key] = {**item, "version_id": item["version_id"] + "-reuploaded"}
    second, created = build_dataset(state, objects, artifact_bucket="art")
    assert second.version == first.version and not created
