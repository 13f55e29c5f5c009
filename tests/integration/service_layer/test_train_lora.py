"""The train stage's ``lora`` method: "Dataset Built" for a LoRA family launches the LoRA job on the
base family's champion (no tokenizer, no shards), and its completion registers the merged export with
the adapter, the base and the LoRA settings in the model record.

No job runs here (a recording runner stands in for SageMaker); the job itself is tested in
``tests/integration/lora/`` and the whole path in ``tests/e2e/test_lora_distill_flow.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform
from docllm.events.contracts import DatasetBuilt, TrainingRequested, to_bus
from docllm.exceptions import NotFoundError
from docllm.lora.config import LoraConfig
from docllm.lora.launch import ENTRY_POINT
from docllm.ports.jobs import JobDescription, JobRunner, JobSpec
from docllm.records import JOBS_PK, JobRecord
from docllm.registry.models import PackageSpec
from docllm.service_layer import jobs, tokenizer, train
from docllm.service_layer.jobs import MODELS_PK
from docllm.service_layer.outbox import pending
from docllm.service_layer.train_lora import NoBaseModelError
from docllm.settings import Settings
from tests.conftest import REPO

LORA_FAMILY = "tiny-s3-lora"  # the packaged family: base_family tiny-s3, r 8, alpha 16, subset share 0.5
BASE_FAMILY = "tiny-s3"
CHAMPION = "tiny-s3-champion-1"
DATASET = "ds-0123456789abcdef"


class RecordingRunner(JobRunner):
    """Accepts every job, as SageMaker would, and keeps its spec."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobSpec] = {}

    def submit(self, spec: JobSpec) -> str:
        self.jobs[spec.name] = spec
        return f"arn:{spec.name}"

    def describe(self, name: str) -> JobDescription:
        if name not in self.jobs:
            raise NotFoundError(name)
        return JobDescription(name=name, status="InProgress")

    def stop(self, name: str) -> None:
        pass


@pytest.fixture
def p(tmp_path: Path) -> Platform:
    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path)}),
        template=REPO / "template.yaml",
    )
    platform.__dict__["jobs"] = RecordingRunner()  # the cached port, replaced
    return platform


def _champion(p: Platform, version: str = CHAMPION) -> str:
    """``version`` as the base family's approved champion, with the training record LoRA reads."""
    export = f"s3://{p.settings.artifact_bucket}/models/{BASE_FAMILY}/{version}/hf/"
    p.state.put(
        MODELS_PK,
        version,
        {"version": version, "family": BASE_FAMILY, "export_uri": export, "tokenizer_version": "tok-base-1"},
    )
    p.registry.register(
        PackageSpec(
            model_version=version,
            family=BASE_FAMILY,
            export_uri=export,
            report_uri=f"s3://{p.settings.artifact_bucket}/evaluations/{version}/report.json",
            report_sha256="0" * 64,
            evaluation_id=f"eval-{version}",
        )
    )
    p.registry.set_status(version, "Approved", "the base of the LoRA tests")
    p.registry.promote(BASE_FAMILY, version)
    return export


def _dataset_built(family: str, *, train_after: bool = True, request_id: str = "req-1") -> dict[str, Any]:
    built = DatasetBuilt(
        dataset_version=DATASET,
        manifest_uri=f"s3://artifacts/datasets/{DATASET}/manifest.json",
        family=family,
        documents=3,
        chunks=9,
        added=3,
        removed=0,
        changed=0,
        train_after=train_after,
        request_id=request_id,
    )
    return to_bus(built).to_wire()


def _runner(p: Platform) -> RecordingRunner:
    runner = p.jobs
    assert isinstance(runner, RecordingRunner)
    return runner


def test_dataset_built_for_a_lora_family_launches_the_lora_job_on_the_base_champion(p: Platform) -> None:
    export = _champion(p)
    out = train.handle_train_event(p, _dataset_built(LORA_FAMILY))
    assert out["outcome"] == "launched" and out["method"] == "lora" and out["base_model_version"] == CHAMPION
    (spec,) = _runner(p).jobs.values()
    assert spec.entry_point == ENTRY_POINT and spec.image == "train"
    assert spec.channels == {
        "base_model": export,
        "dataset": f"s3://{p.settings.artifact_bucket}/datasets/{DATASET}/",
    }
    hp = spec.hyperparameters
    cfg = LoraConfig.model_validate_json(hp["lora_config"])
    assert cfg.base_model_uri == export
    assert cfg.subset is not None and cfg.subset.share == 0.5
    assert (cfg.r, cfg.alpha, cfg.max_steps, cfg.max_length) == (8, 16, 60, 256)
    assert (hp["base_model_version"], hp["tokenizer_version"], hp["family"]) == (CHAMPION, "tok-base-1", LORA_FAMILY)
    record = JobRecord.model_validate(p.state.get(JOBS_PK, spec.name))
    assert record.stage == "train" and record.status == "InProgress"
    assert record.context["method"] == "lora" and record.context["request_id"] == "req-1"
    assert record.context["base_model_version"] == CHAMPION
    # A redelivery adopts the job; it does not start a second.
    assert train.handle_train_event(p, _dataset_built(LORA_FAMILY))["outcome"] == "already-launched"
    assert len(_runner(p).jobs) == 1


def test_training_requested_overrides_reach_the_lora_config(p: Platform) -> None:
    _champion(p)
    request = TrainingRequested(
        family=LORA_FAMILY, dataset_version=DATASET, tokenizer_version="ignored", request_id="req-2",
        train_config={"max_steps": 7, "r": 4},
    )  # fmt: skip
    train.handle_train_event(p, to_bus(request).to_wire())
    (spec,) = _runner(p).jobs.values()
    lora_config = json.loads(spec.hyperparameters["lora_config"])
    assert (lora_config["max_steps"], lora_config["r"]) == (7, 4)


def test_the_tokenizer_stage_skips_a_lora_family_and_the_train_stage_waits_for_shards_of_others(p: Platform) -> None:
    _champion(p)
    assert tokenizer.handle_dataset_built(p, _dataset_built(LORA_FAMILY))["outcome"].startswith("skipped")
    assert "not yet" in train.handle_train_event(p, _dataset_built("smoke"))["outcome"]
    assert train.handle_train_event(p, _dataset_built(LORA_FAMILY, train_after=False)) == {
        "outcome": "no training asked for"
    }
    assert not _runner(p).jobs and not pending(p)


def test_no_base_champion_fails_the_request_naming_the_base_family(p: Platform) -> None:
    with pytest.raises(NoBaseModelError, match="tiny-s3"):
        train.handle_train_event(p, _dataset_built(LORA_FAMILY))
    assert not _runner(p).jobs


def _lora_result(version: str, base_uri: str) -> dict[str, Any]:
    """A LoRA job's result.json (docllm.lora.result.LoraJobResult), as the job writes it."""
    return {
        "model_version": version,
        "family": LORA_FAMILY,
        "dataset_version": DATASET,
        "tokenizer_version": "tok-base-1",
        "variant": "llama",
        "hf_architecture": "LlamaForCausalLM",
        "n_params": 100000,
        "final_train_loss": 2.1,
        "final_val_loss": 2.4,
        "best_val_loss": 2.3,
        "unigram_val_loss": 5.0,
        "tokens_seen": 9000,
        "steps": 24,
        "elapsed_s": 8.5,
        "tokens_per_s": 1058.8,
        "world_size": 1,
        "device": "cpu",
        "model_config": {"n_layer": 2},
        "train_config": {"base_model_uri": base_uri, "r": 8, "alpha": 16, "target_modules": "all-linear"},
        "method": "lora",
        "adapter_path": "adapter",
        "data_path": "data",
        "subset_path": "subset.json",
        "base_model": {"uri": base_uri, "version": CHAMPION, "architecture": "LlamaForCausalLM", "files": {}},
        "trainable_params": 4096,
        "initial_val_loss": 3.9,
        "completion_tokens_seen": 3000,
        "data": {
            "train_examples": 20,
            "validation_examples": 4,
            "train_documents": 6,
            "validation_documents": 2,
            "unfit": 0,
            "by_rule": {"definition": 24},
        },
        "subset": {"kept": 3, "of": 6},
    }


def test_completion_registers_the_merged_export_with_adapter_base_and_settings(p: Platform) -> None:
    base_uri = _champion(p)
    train.handle_train_event(p, _dataset_built(LORA_FAMILY, request_id="req-9"))
    (spec,) = _runner(p).jobs.values()
    output = spec.hyperparameters["output_uri"]
    version = spec.hyperparameters["model_version"]
    art = p.settings.artifact_bucket
    key = output.removeprefix(f"s3://{art}/") + "result.json"
    result = _lora_result(version, base_uri)
    p.objects.put(art, key, json.dumps(result).encode())
    state_change = {
        "version": "0",
        "id": "e-1",
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2025-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"TrainingJobName": spec.name, "TrainingJobStatus": "Completed"},
    }
    out = jobs.handle_job_state(p, state_change)
    assert out["outcome"] == "completed" and out["next"] == "Model Trained", out
    model = p.state.get(MODELS_PK, version)
    assert model is not None
    assert model["export_uri"] == output + "hf/" and model["adapter_uri"] == output + "adapter/"
    assert (model["base_model_uri"], model["base_model_version"]) == (base_uri, CHAMPION)
    assert (model["r"], model["alpha"], model["method"]) == (8, 16, "lora")
    assert model["subset"] == {"kept": 3, "of": 6} and model["subset_uri"] == output + "subset.json"
    assert model["metrics"]["unigram_val_loss"] == 5.0 and model["metrics"]["trainable_params"] == 4096.0
    assert model["tokenizer_version"] == "tok-base-1" and model["family"] == LORA_FAMILY
    trained = [e for e in p.event_log.last(20) if e.detail_type == "Model Trained"]
    (event,) = trained
    detail = event.body["detail"]
    assert detail["export_uri"] == output + "hf/" and detail["request_id"] == "req-9"
    assert detail["checkpoint_uri"] is None


def _put_files(p: Platform, uri: str, files: dict[str, bytes]) -> dict[str, str]:
    """Each file under the s3:// prefix ``uri``; their sha256 by name."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    for name, body in files.items():
        p.objects.put(bucket, prefix + name, body)
    return {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}


def test_the_lora_manifest_names_base_adapter_and_subset_and_verifies(p: Platform) -> None:
    from docllm.manifest.inputs import DecisionRecord
    from docllm.manifest.statement import KIND_ADAPTER, KIND_BASE_MODEL, KIND_SHARD, KIND_TOKENIZER
    from docllm.service_layer import manifest as manifests
    from tests.integration.manifest.conftest import seed_inputs

    seed_inputs(p)  # documents and the dataset version DATASET the manifest lists
    base_uri = _champion(p)
    base_files = _put_files(
        p, base_uri, {"config.json": b'{"architectures": ["LlamaForCausalLM"]}', "model.safetensors": b"\x01" * 4096}
    )
    train.handle_train_event(p, _dataset_built(LORA_FAMILY))
    (spec,) = _runner(p).jobs.values()
    output, version = spec.hyperparameters["output_uri"], spec.hyperparameters["model_version"]
    _put_files(p, output, {
        "hf/config.json": b'{"architectures": ["LlamaForCausalLM"]}', "hf/model.safetensors": b"\x02" * 4096,
        "adapter/adapter_config.json": b'{"r": 8}', "adapter/adapter_model.safetensors": b"\x03" * 512,
        "subset.json": b'{"kept": [{"chunk_id": "c0", "score": 1.5}]}',
    })  # fmt: skip
    result = _lora_result(version, base_uri)
    result["base_model"]["files"] = base_files
    _put_files(p, output, {"result.json": json.dumps(result).encode()})
    jobs.handle_job_state(p, _completed(spec.name))
    decision = DecisionRecord(
        decision_id="d-lora", model_version=version, family=LORA_FAMILY, status="Approved", decided_by="gate",
        at="2025-01-03T00:00:00.000+00:00",
    )  # fmt: skip
    issued = manifests.issue(p, manifests.gather(p, version, decision))
    p.state.transact(issued.writes)
    statement = manifests.show(p, version)
    build = statement["predicate"]["buildDefinition"]
    kinds = [d["annotations"]["kind"] for d in build["resolvedDependencies"]]
    assert KIND_TOKENIZER not in kinds and KIND_SHARD not in kinds  # the base's tokenizer; no shards
    base = [d for d in build["resolvedDependencies"] if d["annotations"]["kind"] == KIND_BASE_MODEL]
    assert {d["uri"]: d["digest"]["sha256"] for d in base} == {base_uri + n: sha for n, sha in base_files.items()}
    assert all(d["annotations"]["modelVersion"] == CHAMPION for d in base)
    assert build["internalParameters"]["artefacts"] == {
        "export": output + "hf/", "adapter": output + "adapter/", "base": base_uri,
    }  # fmt: skip
    byproducts = statement["predicate"]["runDetails"]["byproducts"]
    adapter = sorted(b["name"] for b in byproducts if (b.get("annotations") or {}).get("kind") == KIND_ADAPTER)
    assert adapter == ["adapter/adapter_config.json", "adapter/adapter_model.safetensors"]
    (lora,) = [b for b in byproducts if b["name"] == "lora"]
    assert lora["annotations"]["r"] == 8 and lora["annotations"]["subset"] == {"kept": 3, "of": 6}
    assert any(b["name"] == "lora-subset" and b["uri"] == output + "subset.json" for b in byproducts)
    report = manifests.verify(p, version)
    assert report.ok, report.mismatches
    assert report.checked[KIND_BASE_MODEL] == 2 and report.checked[KIND_ADAPTER] == 2
    # A changed adapter is named; so is a file added beside it.
    _put_files(p, output, {"adapter/adapter_model.safetensors": b"\x04" * 512, "adapter/extra.bin": b"x"})
    found = {(m.kind, m.subject.rsplit("/", 1)[-1]) for m in manifests.verify(p, version).mismatches}
    assert found == {("digest", "adapter_model.safetensors"), ("unlisted", "extra.bin")}


def _completed(name: str) -> dict[str, Any]:
    return {
        "version": "0", "id": "e-1", "detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker",
        "account": "123456789012", "time": "2025-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"TrainingJobName": name, "TrainingJobStatus": "Completed"},
    }  # fmt: skip
