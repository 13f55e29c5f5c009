"""A distilled model's manifest names its teacher (from the training job's result.json), and verification
checks the teacher's weights like any other input."""

from __future__ import annotations

import hashlib
import json

from docllm.manifest.statement import KIND_TEACHER
from docllm.service_layer import manifest as manifests
from tests.integration.manifest.conftest import FAMILY, Seeded, approve

TEACHER_KEY = "models/tiny-s3/tiny-s3-teacher/hf/model.safetensors"
TEACHER_MANIFEST_SHA = "cd" * 32


def _distilled(seeded: Seeded) -> str:
    """The seeded model, recorded as distilled from a teacher whose weights are in the artefact bucket."""
    p, art = seeded.p, seeded.art
    weights = bytes(range(256)) * 64
    p.objects.put(art, TEACHER_KEY, weights)
    key = f"models/docllm-dev-train-{FAMILY}-{1:016d}-1/result.json"
    result = json.loads(p.objects.get(art, key))
    result["teacher"] = {
        "model_version": "tiny-s3-teacher",
        "uri": f"s3://{art}/models/tiny-s3/tiny-s3-teacher/hf/",
        "manifest_sha256": TEACHER_MANIFEST_SHA,
        "weights_file": "model.safetensors",
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "n_params": 2000,
        "model_config": {"n_layer": 4},
    }
    p.objects.put(art, key, json.dumps(result).encode())
    return seeded.model_versions[0]


def test_the_teacher_is_a_resolved_dependency_and_verifies(seeded: Seeded) -> None:
    p, version = seeded.p, _distilled(seeded)
    approve(p, version, "d1")
    deps = manifests.show(p, version)["predicate"]["buildDefinition"]["resolvedDependencies"]
    teacher = [d for d in deps if d["annotations"]["kind"] == KIND_TEACHER]
    assert len(teacher) == 1
    assert teacher[0]["uri"] == f"s3://{seeded.art}/{TEACHER_KEY}"
    assert teacher[0]["annotations"] == {
        "kind": KIND_TEACHER,
        "modelVersion": "tiny-s3-teacher",
        "manifestSha256": TEACHER_MANIFEST_SHA,
    }
    report = manifests.verify(p, version)
    assert report.ok, report.mismatches
    assert report.checked[KIND_TEACHER] == 1


def test_changed_teacher_weights_are_named(seeded: Seeded) -> None:
    p, version = seeded.p, _distilled(seeded)
    approve(p, version, "d1")
    p.objects.put(seeded.art, TEACHER_KEY, b"other weights")
    report = manifests.verify(p, version)
    assert not report.ok
    assert {(m.kind, m.subject) for m in report.mismatches} == {("digest", f"s3://{seeded.art}/{TEACHER_KEY}")}


def test_a_model_without_a_teacher_names_none(seeded: Seeded) -> None:
    p, version = seeded.p, seeded.model_versions[0]
    approve(p, version, "d1")
    deps = manifests.show(p, version)["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert not [d for d in deps if d["annotations"]["kind"] == KIND_TEACHER]
