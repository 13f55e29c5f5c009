"""The train stage's ``distill`` method: a student family's run reads the teacher family's champion (its
export as the ``teacher`` channel, its version and manifest digest in ``train_config.distill``), and
the student's own compliance manifest names that teacher version and manifest digest.

No job runs (a recording runner stands in for SageMaker); the records and artefacts are those of
``tests/integration/manifest/conftest.py``, the teacher a ``tiny-s3`` model approved with a manifest.
The distillation itself is tested in ``tests/integration/training/`` and the whole path in
``tests/e2e/test_lora_distill_flow.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform
from docllm.events.contracts import TrainingRequested, to_bus
from docllm.manifest.inputs import DecisionRecord
from docllm.manifest.statement import KIND_TEACHER
from docllm.records import JOBS_PK, JobRecord
from docllm.registry.models import PackageSpec
from docllm.service_layer import jobs, train
from docllm.service_layer import manifest as manifests
from docllm.service_layer.jobs import MODELS_PK
from docllm.service_layer.train_distill import NoTeacherError
from docllm.settings import Settings
from docllm.training.config import TrainConfig
from tests.conftest import REPO
from tests.integration.manifest.conftest import DATASET, TOKENIZER, Seeded, approve, seed_inputs, seed_model
from tests.integration.service_layer.test_train_lora import RecordingRunner

STUDENT = "tiny-s3-student"  # the packaged family: teacher tiny-s3, n_embd 160, temperature 2, alpha 0.5
TEACHER_FAMILY = "tiny-s3"


@pytest.fixture
def p(tmp_path: Path) -> Platform:
    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path)}),
        template=REPO / "template.yaml",
    )
    platform.__dict__["jobs"] = RecordingRunner()
    return platform


@pytest.fixture
def seeded(p: Platform) -> Seeded:
    return seed_inputs(p)


def _teacher(s: Seeded, *, manifest: bool = True) -> tuple[str, str | None]:
    """A tiny-s3 model as its family's approved champion (with a manifest unless told): version, digest."""
    p = s.p
    version = seed_model(s, 1)
    sha = approve(p, version, "d-teacher").sha256 if manifest else None
    model = p.state.get(MODELS_PK, version)
    assert model is not None
    p.registry.register(
        PackageSpec(
            model_version=version,
            family=TEACHER_FAMILY,
            export_uri=model["export_uri"],
            report_uri=f"s3://{s.art}/evaluations/{version}/report.json",
            report_sha256="0" * 64,
            evaluation_id=f"eval-{version}",
        )
    )
    p.registry.set_status(version, "Approved", "the teacher of the distillation tests")
    p.registry.promote(TEACHER_FAMILY, version)
    return version, sha


def _request(tokenizer_version: str = TOKENIZER, **train_config: Any) -> dict[str, Any]:
    request = TrainingRequested(
        family=STUDENT,
        dataset_version=DATASET,
        tokenizer_version=tokenizer_version,
        request_id="req-d",
        train_config=train_config,
    )
    return to_bus(request).to_wire()


def _runner(p: Platform) -> RecordingRunner:
    assert isinstance(p.jobs, RecordingRunner)
    return p.jobs


def test_the_student_job_reads_the_teacher_champion_with_its_version_and_manifest_digest(
    p: Platform, seeded: Seeded
) -> None:
    teacher, sha = _teacher(seeded)
    out = train.handle_train_event(p, _request())
    assert out["outcome"] == "launched" and out["method"] == "distill" and out["teacher_version"] == teacher
    (spec,) = _runner(p).jobs.values()
    teacher_export = p.state.get(MODELS_PK, teacher)["export_uri"]  # type: ignore[index]
    assert spec.channels["teacher"] == teacher_export
    cfg = TrainConfig.model_validate_json(spec.hyperparameters["train_config"])
    assert cfg.distill is not None
    assert (cfg.distill.teacher_uri, cfg.distill.teacher_version) == (teacher_export, teacher)
    assert cfg.distill.teacher_manifest_sha256 == sha
    assert (cfg.distill.temperature, cfg.distill.alpha) == (2.0, 0.5)
    assert json.loads(spec.hyperparameters["model_config"]) == {"n_embd": 160}  # the half-width student
    record = JobRecord.model_validate(p.state.get(JOBS_PK, spec.name))
    assert record.context["method"] == "distill" and record.context["teacher_version"] == teacher
    assert record.context["teacher_manifest_sha256"] == sha


def test_a_request_may_change_alpha_but_never_the_teacher(p: Platform, seeded: Seeded) -> None:
    teacher, _ = _teacher(seeded)
    train.handle_train_event(p, _request(distill={"alpha": 0.9, "teacher_uri": "s3://elsewhere/x/"}))
    (spec,) = _runner(p).jobs.values()
    cfg = TrainConfig.model_validate_json(spec.hyperparameters["train_config"])
    assert cfg.distill is not None and cfg.distill.alpha == 0.9 and cfg.distill.teacher_version == teacher
    assert cfg.distill.teacher_uri != "s3://elsewhere/x/"


def test_a_teacher_without_a_manifest_teaches_with_no_digest(p: Platform, seeded: Seeded) -> None:
    _teacher(seeded, manifest=False)
    train.handle_train_event(p, _request())
    (spec,) = _runner(p).jobs.values()
    cfg = TrainConfig.model_validate_json(spec.hyperparameters["train_config"])
    assert cfg.distill is not None and cfg.distill.teacher_manifest_sha256 is None


def test_no_teacher_champion_or_another_tokenizer_fails_before_a_job(p: Platform, seeded: Seeded) -> None:
    with pytest.raises(NoTeacherError, match="tiny-s3"):
        train.handle_train_event(p, _request())
    _teacher(seeded)
    with pytest.raises(NoTeacherError, match="one tokenizer"):
        train.handle_train_event(p, _request(tokenizer_version="tok-other"))
    assert not _runner(p).jobs


def test_the_students_manifest_names_the_teacher_version_and_manifest_digest(p: Platform, seeded: Seeded) -> None:
    teacher, sha = _teacher(seeded)
    train.handle_train_event(p, _request())
    (spec,) = _runner(p).jobs.values()
    # What the job publishes (docllm.jobs.train_job): the export, then result.json with the teacher.
    art, output = seeded.art, spec.hyperparameters["output_uri"]
    prefix = output.removeprefix(f"s3://{art}/")
    version = spec.hyperparameters["model_version"]
    teacher_export = p.state.get(MODELS_PK, teacher)["export_uri"]  # type: ignore[index]
    teacher_weights = p.objects.get(art, teacher_export.removeprefix(f"s3://{art}/") + "model.safetensors")
    p.objects.put(art, prefix + "hf/config.json", b'{"architectures": ["LlamaForCausalLM"]}')
    p.objects.put(art, prefix + "hf/model.safetensors", bytes(range(256)) * 8)
    cfg = json.loads(spec.hyperparameters["train_config"])
    result = {
        "model_version": version,
        "family": STUDENT,
        "dataset_version": DATASET,
        "tokenizer_version": TOKENIZER,
        "variant": "llama",
        "hf_architecture": "LlamaForCausalLM",
        "n_params": 500,
        "final_train_loss": 3.0,
        "final_val_loss": 3.2,
        "best_val_loss": 3.1,
        "unigram_val_loss": 6.0,
        "tokens_seen": 5000,
        "steps": 10,
        "elapsed_s": 3.0,
        "tokens_per_s": 1666.0,
        "world_size": 1,
        "device": "cpu",
        "model_config": {"n_embd": 160},
        "train_config": cfg,
        "provenance": {},
        "teacher": {
            "model_version": cfg["distill"]["teacher_version"],
            "uri": cfg["distill"]["teacher_uri"],
            "manifest_sha256": cfg["distill"]["teacher_manifest_sha256"],
            "weights_file": "model.safetensors",
            "weights_sha256": hashlib.sha256(teacher_weights).hexdigest(),
            "n_params": 1000,
            "model_config": {"n_embd": 320},
        },
    }
    p.objects.put(art, prefix + "result.json", json.dumps(result).encode())
    state_change = {
        "version": "0", "id": "e-2", "detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker",
        "account": "123456789012", "time": "2025-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"TrainingJobName": spec.name, "TrainingJobStatus": "Completed"},
    }  # fmt: skip
    assert jobs.handle_job_state(p, state_change)["outcome"] == "completed"
    model = p.state.get(MODELS_PK, version)
    assert model is not None and model["teacher_version"] == teacher and model["method"] == "distill"
    decision = DecisionRecord(
        decision_id="d-student", model_version=version, family=STUDENT, status="Approved", decided_by="gate",
        reasons=["heldout_loss 3.1 <= 6.0"], at="2025-01-03T00:00:00.000+00:00",
    )  # fmt: skip
    issued = manifests.issue(p, manifests.gather(p, version, decision))
    p.state.transact(issued.writes)
    deps = manifests.show(p, version)["predicate"]["buildDefinition"]["resolvedDependencies"]
    (taught,) = [d for d in deps if d["annotations"]["kind"] == KIND_TEACHER]
    assert taught["annotations"] == {"kind": KIND_TEACHER, "modelVersion": teacher, "manifestSha256": sha}
    assert taught["uri"] == teacher_export + "model.safetensors"
    report = manifests.verify(p, version)
    assert report.ok, report.mismatches
