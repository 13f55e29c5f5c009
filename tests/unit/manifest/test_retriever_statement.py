"""A retriever's statement: an in-toto Statement v1, SLSA Provenance v1 predicate, the retriever build type."""

from __future__ import annotations

import math
from typing import Any

import pytest

from docllm.manifest.canonical import canonical_json, sha256_hex
from docllm.manifest.exceptions import ManifestError
from docllm.manifest.inputs import Artefact, JobProvenance
from docllm.manifest.retriever import (
    RETRIEVER_BUILD_TYPE,
    RetrieverInputs,
    build_retriever_statement,
    retriever_problems,
    subject_digests,
)
from docllm.manifest.statement import (
    BUILD_TYPE,
    DESCRIPTOR_FIELDS,
    KIND_CODE,
    KIND_DATASET,
    KIND_TOKENIZER,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    shape_problems,
)

VERSION = "enc-0123456789ab"
PREFIX = f"s3://art/retrievers/{VERSION}/"
FILES = {"encoder.npz": "a" * 64, "tokenizer.model": "b" * 64, "card.json": "c" * 64}


def inputs(**overrides: Any) -> RetrieverInputs:
    base: dict[str, Any] = {
        "version": VERSION,
        "artifacts_uri": PREFIX,
        "files": FILES,
        "settings": {"dim": 16, "epochs": 1},
        "card": {"version": VERSION, "steps": 10, "final_loss": 0.5, "settings": {"dim": 16, "epochs": 1}},
        "family": "tiny-s3",
        "dataset_version": "ds-1",
        "dataset_uri": "s3://art/datasets/ds-1/",
        "dataset_manifest": Artefact(
            name="manifest.json", uri="s3://art/datasets/ds-1/manifest.json", sha256="d" * 64, size=9
        ),
        "tokenizer_version": "tok-1",
        "tokenizer_uri": "s3://art/tokenizers/tok-1/",
        "tokenizer_files": [
            Artefact(name="tokenizer.model", uri="s3://art/tokenizers/tok-1/tokenizer.model", sha256="b" * 64, size=5)
        ],
        "job_name": "docllm-test-retriever-0123456789ab",
        "started_on": "2025-01-01T00:00:00.000+00:00",
        "validation": Artefact(name="validation.json", uri=PREFIX + "validation.json", sha256="e" * 64, size=7),
        "status": "Approved",
        "reason": "hybrid recall@10 0.85 >= BM25 0.80",
        "metrics": {"bm25_recall_at_10": 0.8, "hybrid_recall_at_10": 0.85},
        "builder_id": "urn:docllm:builder:local:test",
    }
    return RetrieverInputs.model_validate({**base, **overrides})


def _deps(statement: dict[str, Any]) -> list[dict[str, Any]]:
    return list(statement["predicate"]["buildDefinition"]["resolvedDependencies"])


def _byproduct(statement: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [b for b in statement["predicate"]["runDetails"]["byproducts"] if b["name"] == name]
    return dict(found)


def test_the_statement_is_an_in_toto_statement_of_the_retriever_build_type() -> None:
    statement = build_retriever_statement(inputs())
    assert statement["_type"] == STATEMENT_TYPE and statement["predicateType"] == PREDICATE_TYPE
    build = statement["predicate"]["buildDefinition"]
    assert build["buildType"] == RETRIEVER_BUILD_TYPE != BUILD_TYPE
    assert set(build) == {"buildType", "externalParameters", "internalParameters", "resolvedDependencies"}
    assert retriever_problems(statement, VERSION) == []
    # The model build type's reader does not take it for a model's statement.
    assert any("buildType" in problem for problem in shape_problems(statement))


def test_the_subjects_are_the_model_files_with_their_sha256() -> None:
    statement = build_retriever_statement(inputs())
    assert subject_digests(statement) == FILES
    for s in statement["subject"]:
        assert set(s) <= DESCRIPTOR_FIELDS and s["uri"] == PREFIX + s["name"]
        assert s["digest"] == {"sha256": FILES[s["name"]]}


def test_a_prefix_without_its_slash_names_the_same_files() -> None:
    statement = build_retriever_statement(inputs(artifacts_uri=PREFIX.rstrip("/")))
    assert {s["uri"] for s in statement["subject"]} == {PREFIX + name for name in FILES}


def test_the_parameters_say_what_was_chosen_and_what_the_platform_chose() -> None:
    build = build_retriever_statement(inputs())["predicate"]["buildDefinition"]
    assert build["externalParameters"] == {"family": "tiny-s3", "settings": {"dim": 16, "epochs": 1}}
    internal = build["internalParameters"]
    assert internal["retrieverVersion"] == VERSION
    assert (internal["datasetVersion"], internal["tokenizerVersion"]) == ("ds-1", "tok-1")
    assert internal["artefacts"] == {
        "encoder": PREFIX,
        "dataset": "s3://art/datasets/ds-1/",
        "tokenizer": "s3://art/tokenizers/tok-1/",
    }


def test_the_dependencies_are_the_dataset_and_every_tokenizer_file_by_digest() -> None:
    deps = _deps(build_retriever_statement(inputs()))
    (dataset,) = [d for d in deps if d["annotations"]["kind"] == KIND_DATASET]
    assert dataset["digest"] == {"sha256": "d" * 64} and dataset["annotations"]["version"] == "ds-1"
    (tokenizer,) = [d for d in deps if d["annotations"]["kind"] == KIND_TOKENIZER]
    assert tokenizer["uri"] == "s3://art/tokenizers/tok-1/tokenizer.model"
    assert tokenizer["digest"] == {"sha256": "b" * 64} and tokenizer["annotations"]["version"] == "tok-1"
    assert all(set(d) <= DESCRIPTOR_FIELDS for d in deps)


def test_a_dataset_without_a_record_is_named_by_its_version_and_prefix() -> None:
    deps = _deps(build_retriever_statement(inputs(dataset_manifest=None)))
    (dataset,) = [d for d in deps if d["annotations"]["kind"] == KIND_DATASET]
    assert dataset["uri"] == "s3://art/datasets/ds-1/" and "digest" not in dataset
    assert dataset["annotations"]["version"] == "ds-1"


def test_the_jobs_recorded_code_is_a_dependency() -> None:
    prov = JobProvenance(
        code={"repository": "https://example.com/r.git", "commit": "f" * 40, "dirty": False},
        environment={"image_digest": "sha256:" + "9" * 64},
    )
    deps = _deps(build_retriever_statement(inputs(provenance={"train": prov})))
    (code,) = [d for d in deps if d["annotations"]["kind"] == KIND_CODE]
    assert code["digest"] == {"gitCommit": "f" * 40} and code["annotations"]["role"] == "train"
    assert any(d.get("digest") == {"sha256": "9" * 64} for d in deps)


def test_the_run_details_name_the_job_and_the_gates_decision() -> None:
    statement = build_retriever_statement(inputs())
    run = statement["predicate"]["runDetails"]
    assert run["builder"] == {"id": "urn:docllm:builder:local:test"}
    assert run["metadata"] == {
        "invocationId": "docllm-test-retriever-0123456789ab",
        "startedOn": "2025-01-01T00:00:00.000+00:00",
    }
    decision = _byproduct(statement, "decision")
    assert decision["annotations"] == {
        "kind": "decision",
        "status": "Approved",
        "reason": "hybrid recall@10 0.85 >= BM25 0.80",
    }
    assert decision["digest"]["sha256"] == sha256_hex(canonical_json(decision["annotations"]))
    assert _byproduct(statement, "metrics")["annotations"]["hybrid_recall_at_10"] == 0.85
    validation = _byproduct(statement, "validation.json")
    assert validation["uri"] == PREFIX + "validation.json" and validation["digest"] == {"sha256": "e" * 64}


def test_the_same_inputs_give_the_same_bytes() -> None:
    assert canonical_json(build_retriever_statement(inputs())) == canonical_json(build_retriever_statement(inputs()))


def test_a_non_finite_figure_is_recorded_as_text() -> None:
    card = {**inputs().card, "final_loss": math.nan}
    statement = build_retriever_statement(inputs(card=card))
    assert _byproduct(statement, "card")["annotations"]["final_loss"] == "NaN"


def test_no_file_is_no_statement() -> None:
    with pytest.raises(ManifestError, match="no model file"):
        build_retriever_statement(inputs(files={}))


def test_another_versions_statement_is_a_problem() -> None:
    statement = build_retriever_statement(inputs())
    assert retriever_problems(statement, "enc-other") == [
        "predicate.buildDefinition.internalParameters.retrieverVersion: not enc-other"
    ]
    assert retriever_problems([], VERSION) == ["not a JSON object"]
    digestless = {**statement, "subject": [{"name": "encoder.npz"}]}
    assert "subject[0]: a subject needs a digest" in retriever_problems(digestless, VERSION)
