"""The train stage's ``continue`` method: a family's run starts from its champion's export with a short
schedule, or falls back to a full run with the reason recorded (no champion, another tokenizer, another
model shape). No job runs: a recording runner stands in for SageMaker; the job itself (the ``init``
channel) is tested in ``tests/unit/training/test_incremental_job.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform
from docllm.events.contracts import ModelTrained, TrainingRequested, to_bus
from docllm.exceptions import NotFoundError
from docllm.model.config import ModelConfig
from docllm.ports.jobs import JobDescription, JobRunner, JobSpec
from docllm.records import JOBS_PK, JobRecord
from docllm.registry.models import PackageSpec
from docllm.service_layer import train
from docllm.service_layer.jobs import MODELS_PK, SHARDS_PK
from docllm.service_layer.tokenizer import CHOICES_PK, TokenizerChoice, choice_key
from docllm.settings import Settings
from docllm.tokenizer.artifacts import TOKENIZERS_PK, TokenizerSummary
from docllm.training.families import FAMILIES_FILE_ENV
from tests.conftest import REPO

FAMILY = "cont"
DATASET = "ds-new"
TOK, TOK_NEW = "tok-champion", "tok-retrained"
CHAMPION = "cont-m1"
FAMILIES = """
version: 1
families:
  cont:
    method: continue
    preset: tiny
    variant: llama
    block_size: 64
    model: {MODEL}
    budget: {tokens: 40000, minutes: 4}
    tokenizer: {vocab_size: 512}
    train: {learning_rate: 0.002, warmup_steps: 50, micro_batch_size: 4}
    incremental: {budget_share: 0.25, learning_rate_share: 0.5, warmup_steps: 3, min_tokenizer_coverage: 0.99}
"""


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


def _families(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str = "{}") -> None:
    path = tmp_path / "families.yaml"
    path.write_text(FAMILIES.replace("{MODEL}", model), encoding="utf-8")
    monkeypatch.setenv(FAMILIES_FILE_ENV, str(path))


@pytest.fixture
def p(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    _families(tmp_path, monkeypatch)
    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path / "data")}),
        template=REPO / "template.yaml",
    )
    platform.__dict__["jobs"] = RecordingRunner()  # the cached port, replaced
    art = platform.settings.artifact_bucket
    for tok in (TOK, TOK_NEW):
        summary = TokenizerSummary(
            version=tok,
            dataset_version="ds-any",
            artifacts_uri=f"s3://{art}/tokenizers/{tok}/",
            vocab_size=512,
            model_type="bpe",
            model_sha256="0" * 64,
        )
        platform.state.put(TOKENIZERS_PK, tok, summary.model_dump(mode="json"))
        platform.state.put(SHARDS_PK, f"{DATASET}/{tok}", {"shards_uri": f"s3://{art}/shards/{DATASET}/{tok}/"})
    return platform


def _champion(p: Platform, *, tokenizer: str = TOK) -> str:
    """An approved champion of the family, with its export's docllm_model.json in the object store."""
    art = p.settings.artifact_bucket
    export = f"s3://{art}/models/{FAMILY}/{CHAMPION}/hf/"
    config = ModelConfig.preset("tiny", vocab_size=512, variant="llama", block_size=64)
    p.objects.put(art, f"models/{FAMILY}/{CHAMPION}/hf/docllm_model.json", config.model_dump_json().encode())
    record = {"version": CHAMPION, "family": FAMILY, "export_uri": export, "tokenizer_version": tokenizer}
    p.state.put(MODELS_PK, CHAMPION, {**record, "dataset_version": "ds-old"})
    p.registry.register(
        PackageSpec(
            model_version=CHAMPION,
            family=FAMILY,
            export_uri=export,
            report_uri=f"s3://{art}/evaluations/{CHAMPION}/report.json",
            report_sha256="0" * 64,
            evaluation_id=f"eval-{CHAMPION}",
        )
    )
    p.registry.set_status(CHAMPION, "Approved", "the champion of the continue tests")
    p.registry.promote(FAMILY, CHAMPION)
    return export


def _request(tokenizer: str = TOK, **train_config: Any) -> dict[str, Any]:
    event = TrainingRequested(
        family=FAMILY,
        dataset_version=DATASET,
        tokenizer_version=tokenizer,
        request_id="req-c",
        train_config=train_config,
    )
    return to_bus(event).to_wire()


def _only_job(p: Platform) -> tuple[JobSpec, JobRecord]:
    runner = p.jobs
    assert isinstance(runner, RecordingRunner) and len(runner.jobs) == 1
    spec = next(iter(runner.jobs.values()))
    item = p.state.get(JOBS_PK, spec.name)
    assert item is not None
    return spec, JobRecord.model_validate(item)


def test_with_a_champion_the_run_continues_from_its_export_on_a_short_schedule(p: Platform) -> None:
    export = _champion(p)
    out = train.handle_train_event(p, _request())
    assert out["method"] == "continue"
    spec, record = _only_job(p)
    assert spec.channels["init"] == export
    cfg = json.loads(spec.hyperparameters["train_config"])
    # A quarter of each budget, half the peak learning rate, the policy's warmup.
    assert (cfg["max_tokens"], cfg["max_minutes"]) == (10000, 1.0)
    assert cfg["learning_rate"] == pytest.approx(0.001) and cfg["warmup_steps"] == 3
    ctx = record.context
    assert (ctx["method"], ctx["init_from"], ctx["champion"]) == ("continue", CHAMPION, CHAMPION)
    assert ctx["init_uri"] == export
    assert ctx["reason"] == f"continued from champion {CHAMPION} with 0.25 of the budget"
    assert spec.tags["docllm:method"] == "continue"


def test_a_request_s_own_budget_is_shortened_too(p: Platform) -> None:
    _champion(p)
    train.handle_train_event(p, _request(max_tokens=80000, max_steps=400))
    spec, _ = _only_job(p)
    cfg = json.loads(spec.hyperparameters["train_config"])
    assert (cfg["max_tokens"], cfg["max_steps"], cfg["max_minutes"]) == (20000, 100, 1.0)


def test_without_a_champion_the_run_is_a_full_one_and_says_so(p: Platform) -> None:
    out = train.handle_train_event(p, _request())
    assert out["method"] == "pretrain"
    spec, record = _only_job(p)
    assert "init" not in spec.channels
    cfg = json.loads(spec.hyperparameters["train_config"])
    assert (cfg["max_tokens"], cfg["max_minutes"], cfg["warmup_steps"]) == (40000, 4.0, 50)  # the full schedule
    assert record.context["reason"] == "full run: no champion to continue from"
    assert record.context["family_method"] == "continue" and "init_from" not in record.context


def test_a_retrained_tokenizer_makes_a_full_run_with_the_tokenizer_stage_s_reason(p: Platform) -> None:
    _champion(p)
    why = "tokenizer tok-champion covers only 0.9512 of 8,000 sampled tokens (...): a new tokenizer was trained"
    choice = TokenizerChoice(
        family=FAMILY,
        dataset_version=DATASET,
        tokenizer_version=TOK_NEW,
        policy="continue",
        source_family=FAMILY,
        source_model=CHAMPION,
        reused=False,
        coverage=0.9512,
        min_coverage=0.99,
        reason=why,
    )
    p.state.put(CHOICES_PK, choice_key(FAMILY, DATASET), choice.model_dump(mode="json"))
    out = train.handle_train_event(p, _request(tokenizer=TOK_NEW))
    assert out["method"] == "pretrain"
    spec, record = _only_job(p)
    assert "init" not in spec.channels and spec.hyperparameters["tokenizer_version"] == TOK_NEW
    assert record.context["reason"] == f"full run: {why}"
    assert record.context["champion"] == CHAMPION


def test_another_tokenizer_without_a_recorded_choice_still_names_both(p: Platform) -> None:
    _champion(p)
    train.handle_train_event(p, _request(tokenizer=TOK_NEW))
    _, record = _only_job(p)
    assert record.context["reason"] == f"full run: the champion's tokenizer {TOK} is not this run's {TOK_NEW}"


def test_a_changed_model_shape_makes_a_full_run(p: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _champion(p)
    _families(tmp_path, monkeypatch, model="{n_embd: 96}")  # the family widened since the champion
    train.handle_train_event(p, _request())
    spec, record = _only_job(p)
    assert "init" not in spec.channels
    assert record.context["reason"].startswith(f"full run: the family's model shape changed since champion {CHAMPION}")
    assert "n_embd: 256 -> 96" in record.context["reason"]


def test_a_champion_without_an_export_makes_a_full_run(p: Platform) -> None:
    _champion(p)
    item = p.state.get(MODELS_PK, CHAMPION)
    assert item is not None
    p.state.put(MODELS_PK, CHAMPION, {**item, "export_uri": ""})
    train.handle_train_event(p, _request())
    _, record = _only_job(p)
    assert record.context["reason"] == f"full run: champion {CHAMPION} has no export to continue from"


def test_the_model_record_and_event_carry_the_champion_and_the_reason(p: Platform) -> None:
    _champion(p)
    train.handle_train_event(p, _request())
    _, record = _only_job(p)
    art = p.settings.artifact_bucket
    bucket, key = record.output_uri.removeprefix("s3://").split("/", 1)
    assert bucket == art
    result = {
        "model_version": "cont-m2",
        "family": FAMILY,
        "dataset_version": DATASET,
        "tokenizer_version": TOK,
        "variant": "llama",
        "hf_architecture": "LlamaForCausalLM",
        "n_params": 1000,
        "final_train_loss": 3.0,
        "final_val_loss": 3.1,
        "best_val_loss": 3.1,
        "tokens_seen": 10000,
        "steps": 40,
        "elapsed_s": 60.0,
        "tokens_per_s": 166.0,
        "world_size": 1,
        "device": "cpu",
        "model_config": {},
        "train_config": {},
        "init": {"weights_file": "model.safetensors", "weights_sha256": "ab" * 32},
    }
    p.objects.put(bucket, key + "result.json", json.dumps(result).encode())
    done = train.complete_job(p, record)
    assert isinstance(done.event, ModelTrained) and done.event.model_version == "cont-m2"
    model = done.writes[0].item  # type: ignore[union-attr]
    assert model["init_from"] == CHAMPION and model["method"] == "continue"
    assert model["reason"].startswith("continued from champion")


def test_the_manifest_of_a_continued_model_lists_the_champion_s_weights_and_the_reason(p: Platform) -> None:
    import hashlib

    from docllm.manifest.statement import KIND_INIT
    from docllm.service_layer import manifest as manifests
    from tests.integration.manifest.conftest import approve, seed_inputs, seed_model

    s = seed_inputs(p)
    champion = seed_model(s, 1)
    continued = seed_model(s, 2)
    art = p.settings.artifact_bucket
    champion_export = str((p.state.get(MODELS_PK, champion) or {})["export_uri"])
    bucket, key = champion_export.removeprefix("s3://").split("/", 1)
    weights_sha = hashlib.sha256(p.objects.get(bucket, key + "model.safetensors")).hexdigest()
    reason = f"continued from champion {champion} with 0.25 of the budget"
    record = p.state.get(MODELS_PK, continued) or {}
    p.state.put(MODELS_PK, continued, {**record, "init_from": champion, "init_uri": champion_export, "reason": reason})
    job = JobRecord.model_validate(p.state.get(JOBS_PK, str(record["job"])))
    out_bucket, out_key = job.output_uri.removeprefix("s3://").split("/", 1)
    result = json.loads(p.objects.get(out_bucket, out_key + "result.json"))
    result["init"] = {"weights_file": "model.safetensors", "weights_sha256": weights_sha}
    p.objects.put(out_bucket, out_key + "result.json", json.dumps(result).encode())

    approve(p, continued, "d-continued")
    build = manifests.show(p, continued)["predicate"]["buildDefinition"]
    (init,) = [d for d in build["resolvedDependencies"] if d["annotations"]["kind"] == KIND_INIT]
    assert init["annotations"] == {"kind": KIND_INIT, "modelVersion": champion}
    assert init["uri"] == champion_export + "model.safetensors" and init["digest"] == {"sha256": weights_sha}
    assert build["internalParameters"]["trainingReason"] == reason
    report = manifests.verify(p, continued)
    assert report.ok, report.mismatches
    # The champion's weights changed after the fact: verification names the initial weights.
    p.objects.put(bucket, key + "model.safetensors", b"other weights")
    assert not manifests.verify(p, continued).ok
    assert art == bucket
