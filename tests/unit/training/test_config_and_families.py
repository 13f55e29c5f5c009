from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from docllm.model.config import PRESETS
from docllm.training.config import TrainConfig, parse_train_config
from docllm.training.exceptions import TrainingConfigError
from docllm.training.families import load_families, parse_families
from docllm.training.launch import train_job_spec


def test_every_training_setting_is_documented() -> None:
    for name, field in TrainConfig.model_fields.items():
        assert field.description, name


def test_invalid_train_setting_names_the_field() -> None:
    with pytest.raises(TrainingConfigError) as err:
        parse_train_config('{"max_steps": 10, "grad_accum_steps": 0}')
    assert err.value.field == "grad_accum_steps"


def test_unknown_train_setting_is_rejected() -> None:
    with pytest.raises(TrainingConfigError) as err:
        parse_train_config({"max_steps": 1, "learning_rat": 0.1})
    assert err.value.field == "learning_rat"


def test_a_budget_is_required() -> None:
    with pytest.raises(TrainingConfigError, match="max_tokens"):
        parse_train_config("{}")


def test_malformed_json_is_a_config_error() -> None:
    with pytest.raises(TrainingConfigError):
        parse_train_config("{not json")


def test_packaged_families_load_and_use_known_presets() -> None:
    families = load_families()
    assert {"tiny-s3", "iam", "ec2", "aws-unified"} <= set(families)
    for fam in families.values():
        assert fam.preset in PRESETS
        fam.train_config()  # every family's overrides are valid
    tiny = families["tiny-s3"]
    assert tiny.services == ["s3"] and tiny.budget.minutes == 5


def test_family_with_a_bad_training_override_names_family_and_field() -> None:
    text = "families:\n  x1:\n    preset: tiny\n    budget: {minutes: 1}\n    train: {warmup_steps: -1}\n"
    with pytest.raises(TrainingConfigError) as err:
        parse_families(text)
    assert err.value.field == "families.x1.train.warmup_steps"


def test_family_with_an_unknown_preset_is_rejected() -> None:
    text = "families:\n  x1:\n    preset: 7b\n    budget: {minutes: 1}\n"
    with pytest.raises(TrainingConfigError) as err:
        parse_families(text)
    assert err.value.field == "families.x1.preset"


def test_family_without_budget_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("families:\n  x1:\n    preset: tiny\n    budget: {}\n")
    with pytest.raises(TrainingConfigError, match="budget"):
        load_families(path)


def test_families_and_launch_import_without_torch() -> None:
    code = (
        "import sys, docllm.training.families, docllm.training.launch, docllm.training.config;"
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_job_spec_follows_the_family() -> None:
    fam = load_families()["aws-unified"]
    spec = train_job_spec(
        family=fam,
        dataset_version="ds-7",
        tokenizer_version="tok-3",
        shards_uri="s3://a/shards/ds-7/",
        tokenizer_uri="s3://a/tok/tok-3/",
        artifact_bucket="a",
        job_name="aws-unified-ds-7",
    )
    assert (spec.instance_type, spec.instance_count, spec.spot) == (fam.instance_type, 2, True)
    assert spec.max_wait_s is not None and spec.max_wait_s >= spec.max_runtime_s
    assert spec.channels == {"shards": "s3://a/shards/ds-7/", "tokenizer": "s3://a/tok/tok-3/"}
    assert spec.checkpoint_uri == "s3://a/models/aws-unified/aws-unified-ds-7/checkpoints/"
    cfg = parse_train_config(spec.hyperparameters["train_config"])
    assert cfg == fam.train_config()


def test_job_spec_rejects_bad_overrides_before_submitting() -> None:
    with pytest.raises(TrainingConfigError):
        train_job_spec(
            family=load_families()["tiny-s3"],
            dataset_version="d",
            tokenizer_version="t",
            shards_uri="s3://a/s/",
            tokenizer_uri="s3://a/t/",
            artifact_bucket="a",
            job_name="j",
            train_overrides={"micro_batch_size": 0},
        )
