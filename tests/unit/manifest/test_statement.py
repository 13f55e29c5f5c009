"""The statement is an in-toto Statement v1 whose predicate has SLSA Provenance v1's shape."""

from __future__ import annotations

import math
from typing import Any

import pytest

from docllm.manifest.canonical import canonical_json
from docllm.manifest.chain import ChainLink
from docllm.manifest.exceptions import ManifestError
from docllm.manifest.inputs import (
    Artefact,
    DecisionRecord,
    EvaluationRef,
    InputDocument,
    JobProvenance,
    ManifestInputs,
    TeacherRef,
)
from docllm.manifest.statement import (
    BUILD_TYPE,
    DESCRIPTOR_FIELDS,
    KIND_TEACHER,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    build_statement,
    chain_link_of,
    decision_of,
    model_version_of,
    shape_problems,
)

H = "ab" * 32
#: Field sets of the in-toto Statement v1 and SLSA Provenance v1 specifications.
STATEMENT_FIELDS = {"_type", "subject", "predicateType", "predicate"}
BUILD_DEFINITION_FIELDS = {"buildType", "externalParameters", "internalParameters", "resolvedDependencies"}
RUN_DETAILS_FIELDS = {"builder", "metadata", "byproducts"}
METADATA_FIELDS = {"invocationId", "startedOn", "finishedOn"}


def art(name: str, uri: str) -> Artefact:
    return Artefact(name=name, uri=uri, sha256=H, size=3)


def inputs(**overrides: Any) -> ManifestInputs:
    base: dict[str, Any] = {
        "model_version": "tiny-s3-1",
        "family": "tiny-s3",
        "family_definition": {"name": "tiny-s3", "preset": "tiny"},
        "train_config": {"lr": 3e-4},
        "model_config": {"n_layer": 2},
        "dataset_version": "ds-1",
        "tokenizer_version": "tok-1",
        "split_rule": {"validation": 0.05, "test": 0.05, "salt": "docllm-split-v1"},
        "export_uri": "s3://art/models/j/hf/",
        "model_files": [art("model.safetensors", "s3://art/models/j/hf/model.safetensors")],
        "dataset_manifest": art("manifest.json", "s3://art/datasets/ds-1/manifest.json"),
        "documents": [
            InputDocument(doc_key="s3/a.md", bucket="raw", version_id="v1", sha256=H, split="test", service="s3")
        ],
        "tokenizer_uri": "s3://art/tokenizers/tok-1/",
        "tokenizer_files": [art("tokenizer.model", "s3://art/tokenizers/tok-1/tokenizer.model")],
        "shards_uri": "s3://art/shards/ds-1/tok-1/",
        "shard_files": [art("train/shard-00000.bin", "s3://art/shards/ds-1/tok-1/train/shard-00000.bin")],
        "jobs": {"tokenizer": "tok-job", "shards": "shards-job", "train": "train-job", "evaluate": "eval-job"},
        "provenance": {
            "train": JobProvenance(
                code={"repository": "https://example.com/r.git", "commit": "c" * 40, "dirty": True},
                environment={"image_digest": "sha256:" + "d" * 64, "lock_sha256": H, "python": "3.11"},
            ),
            "issuer": JobProvenance(
                code={"repository": "unknown", "commit": "unknown", "dirty": None},
                environment={"image_digest": None, "lock_sha256": H, "python": "3.11"},
            ),
        },
        "started_on": "2025-01-01T00:00:00.000+00:00",
        "finished_on": "2025-01-01T00:05:00.000+00:00",
        "metrics": {"training": {"final_val_loss": 3.1}, "evaluation": {"perplexity": 22.0}},
        "evaluation": EvaluationRef(
            evaluation_id="ev-1", report_uri="s3://art/evaluations/ev-1/report.json", report_sha256=H
        ),
        "decision": DecisionRecord(
            decision_id="d1",
            model_version="tiny-s3-1",
            family="tiny-s3",
            status="Approved",
            decided_by="gate",
            reasons=["ok"],
            at="2025-01-01T00:06:00.000+00:00",
        ),
        "builder_id": "urn:docllm:builder:local:dev",
    }
    return ManifestInputs.model_validate({**base, **overrides})


LINK = ChainLink(family="tiny-s3", sequence=2, previous_sha256=H)


def test_the_statement_has_exactly_the_in_toto_v1_fields() -> None:
    st = build_statement(inputs(), LINK)
    assert set(st) == STATEMENT_FIELDS
    assert (st["_type"], st["predicateType"]) == (STATEMENT_TYPE, PREDICATE_TYPE)
    assert shape_problems(st) == []


def test_the_predicate_has_the_slsa_v1_shape() -> None:
    predicate = build_statement(inputs(), LINK)["predicate"]
    assert set(predicate) == {"buildDefinition", "runDetails"}
    assert set(predicate["buildDefinition"]) == BUILD_DEFINITION_FIELDS
    assert predicate["buildDefinition"]["buildType"] == BUILD_TYPE
    assert set(predicate["runDetails"]) == RUN_DETAILS_FIELDS
    assert set(predicate["runDetails"]["metadata"]) == METADATA_FIELDS
    assert predicate["runDetails"]["builder"] == {"id": "urn:docllm:builder:local:dev"}


def test_every_descriptor_is_a_resource_descriptor_v1() -> None:
    st = build_statement(inputs(), LINK)
    descriptors = (
        st["subject"]
        + st["predicate"]["buildDefinition"]["resolvedDependencies"]
        + st["predicate"]["runDetails"]["byproducts"]
    )
    for d in descriptors:
        assert set(d) <= DESCRIPTOR_FIELDS, d
        assert {"uri", "digest", "content"} & set(d), d
        assert all(isinstance(v, str) for v in d.get("digest", {}).values())


def test_subjects_are_the_model_files_with_their_digests() -> None:
    st = build_statement(inputs(), LINK)
    assert st["subject"] == [
        {"name": "model.safetensors", "uri": "s3://art/models/j/hf/model.safetensors", "digest": {"sha256": H}}
    ]


def test_documents_are_pinned_to_their_object_versions() -> None:
    deps = build_statement(inputs(), LINK)["predicate"]["buildDefinition"]["resolvedDependencies"]
    doc = next(d for d in deps if d["annotations"]["kind"] == "document")
    assert doc["uri"] == "s3://raw/s3/a.md?versionId=v1"
    assert doc["annotations"] == {"kind": "document", "split": "test", "service": "s3", "versionId": "v1"}


def test_code_is_pinned_by_commit_and_an_unknown_commit_is_said_plainly() -> None:
    deps = build_statement(inputs(), LINK)["predicate"]["buildDefinition"]["resolvedDependencies"]
    code = {d["name"]: d for d in deps if d["annotations"]["kind"] == "code"}
    assert code["code:train"]["digest"] == {"gitCommit": "c" * 40}
    assert code["code:train"]["uri"] == "git+https://example.com/r.git@" + "c" * 40
    assert code["code:train"]["annotations"]["dirty"] is True
    assert code["code:issuer"]["annotations"]["commit"] == "unknown"
    envs = {d["name"]: d for d in deps if d["annotations"]["kind"] == "environment"}
    assert envs["image:train"]["digest"] == {"sha256": "d" * 64}
    assert envs["environment:issuer"]["digest"] == {"sha256": H}


def test_the_chain_position_and_the_decision_read_back() -> None:
    st = build_statement(inputs(), LINK)
    assert chain_link_of(st) == LINK
    assert decision_of(st)["decision_id"] == "d1"
    assert model_version_of(st) == "tiny-s3-1"


def test_the_same_inputs_give_the_same_bytes() -> None:
    assert canonical_json(build_statement(inputs(), LINK)) == canonical_json(build_statement(inputs(), LINK))


def test_non_finite_hyperparameters_and_metrics_are_written_as_text() -> None:
    st = build_statement(
        inputs(train_config={"clip": math.inf}, metrics={"training": {"loss": math.nan}, "evaluation": {}}), LINK
    )
    assert st["predicate"]["buildDefinition"]["externalParameters"]["trainConfig"] == {"clip": "Infinity"}
    metrics = next(b for b in st["predicate"]["runDetails"]["byproducts"] if b["name"] == "metrics")
    assert metrics["annotations"]["training"] == {"loss": "NaN"}


def test_a_model_without_files_cannot_be_a_subject() -> None:
    with pytest.raises(ManifestError, match="no file"):
        build_statement(inputs(model_files=[]), LINK)


def test_shape_problems_name_what_is_wrong() -> None:
    st = build_statement(inputs(), LINK)
    st["extra"] = 1
    st["subject"] = [{"name": "x"}]
    problems = shape_problems(st)
    assert "unknown fields ['extra']" in problems
    assert any(p.startswith("subject[0]: needs one of") for p in problems)
    assert shape_problems([]) == ["not a JSON object"]


def test_a_distilled_model_names_its_teacher_among_the_dependencies() -> None:
    teacher = TeacherRef(
        model_version="tiny-s3-0",
        uri="s3://art/models/tiny-s3/tiny-s3-0/hf/",
        weights_file="model.safetensors",
        weights_sha256=H,
        manifest_sha256="cd" * 32,
    )
    st = build_statement(inputs(teacher=teacher), LINK)
    assert shape_problems(st) == []
    deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert [d for d in deps if d["annotations"]["kind"] == KIND_TEACHER] == [
        {
            "name": "teacher:tiny-s3-0",
            "uri": "s3://art/models/tiny-s3/tiny-s3-0/hf/model.safetensors",
            "digest": {"sha256": H},
            "annotations": {"kind": KIND_TEACHER, "modelVersion": "tiny-s3-0", "manifestSha256": "cd" * 32},
        }
    ]
    plain = build_statement(inputs(), LINK)["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert not [d for d in plain if d["annotations"]["kind"] == KIND_TEACHER]
