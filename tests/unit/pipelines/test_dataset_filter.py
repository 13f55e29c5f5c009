"""A family's data filter on top of services: document key patterns and languages; versions built
without them keep their name."""

from __future__ import annotations

import hashlib
import json

import pytest

from docllm.dataset.exceptions import EmptyDatasetError
from docllm.dataset.versions import SPLIT_RULE, build_dataset
from tests.unit.dataset.fakes import DictObjects, DictState, add_document


def _corpus() -> tuple[DictState, DictObjects]:
    state, objects = DictState(), DictObjects()
    for key in ("s3/BucketPolicy.md", "s3/BucketVersioning.md", "s3/Welcome.md", "iam/Roles.md"):
        add_document(state, objects, key, [f"text of {key}"], service=key.split("/")[0])
    rec = state.get("docs", "s3/Welcome.md")
    assert rec is not None
    state.put("docs", "s3/Welcome.md", {**rec, "language": "de"})
    return state, objects


def test_paths_and_languages_select_documents_and_name_a_version_of_their_own() -> None:
    state, objects = _corpus()
    plain, _ = build_dataset(state, objects, artifact_bucket="art", services=["s3"], family="f")
    by_path, _ = build_dataset(
        state, objects, artifact_bucket="art", services=["s3"], family="f", paths=["s3/*Bucket*"]
    )
    assert [d.doc_key for d in by_path.documents] == ["s3/BucketPolicy.md", "s3/BucketVersioning.md"]
    assert by_path.paths == ["s3/*Bucket*"] and by_path.version != plain.version
    # Another filter is another lineage: its previous version is not the unfiltered one.
    assert by_path.previous_version is None
    german, _ = build_dataset(state, objects, artifact_bucket="art", services=["s3"], family="f", languages=["de"])
    # A document of unknown language passes a language filter (ingest could not tell).
    assert "s3/Welcome.md" in [d.doc_key for d in german.documents]
    english, _ = build_dataset(state, objects, artifact_bucket="art", services=["s3"], family="f", languages=["en"])
    assert "s3/Welcome.md" not in [d.doc_key for d in english.documents] and english.languages == ["en"]


def test_a_version_without_path_or_language_filters_keeps_the_hash_it_had_before_them() -> None:
    state, objects = _corpus()
    manifest, _ = build_dataset(
        state, objects, artifact_bucket="art", services=["s3"], family="f", paths=[], languages=[]
    )
    # The payload of the version hash before paths and languages existed.
    payload = {
        "schema": 1,
        "family": "f",
        "services": ["s3"],
        "split_rule": SPLIT_RULE.model_dump(),
        "documents": [[d.doc_key, d.sha256, d.chunk_ids] for d in manifest.documents],
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    assert manifest.version == "ds-" + hashlib.sha256(blob).hexdigest()[:16]


def test_a_filter_that_selects_nothing_names_itself_in_the_error() -> None:
    state, objects = _corpus()
    with pytest.raises(EmptyDatasetError, match=r"paths=\['ec2/\*'\]"):
        build_dataset(state, objects, artifact_bucket="art", paths=["ec2/*"])
