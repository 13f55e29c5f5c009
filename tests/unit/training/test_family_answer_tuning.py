"""A family's answer-tuning setting: validated like the others, and it keys the family's shards."""

from __future__ import annotations

import pytest

from docllm.dataset.versions import DatasetManifest, DatasetStats
from docllm.service_layer.shards import shards_job_spec, shards_key, shards_key_for
from docllm.training.exceptions import TrainingConfigError
from docllm.training.families import load_families, parse_families

BASE = """
families:
  f:
    preset: tiny
    budget: {minutes: 1}
"""


def test_packaged_families_tune_tiny_s3_and_not_smoke() -> None:
    families = load_families()
    assert families["smoke"].answer_tuning is None
    tuning = families["tiny-s3"].answer_tuning
    assert tuning is not None and tuning.share == 0.2 and tuning.max_examples == 20000


def test_invalid_answer_tuning_names_the_family_and_field() -> None:
    with pytest.raises(TrainingConfigError) as e:
        parse_families(BASE + "    answer_tuning: {share: 1.5}\n")
    assert "families.f.answer_tuning.share" in str(e.value)
    with pytest.raises(TrainingConfigError):
        parse_families(BASE + "    answer_tuning: {sahre: 0.1}\n")


def test_tuned_family_gets_its_own_shards_key_and_prefix() -> None:
    plain = parse_families(BASE)["f"]
    tuned = parse_families(BASE + "    answer_tuning: {share: 0.1}\n")["f"]
    assert shards_key_for(plain, "ds-1", "tok-1") == shards_key("ds-1", "tok-1") == "ds-1/tok-1"
    assert tuned.answer_tuning is not None
    tag = tuned.answer_tuning.tag(tuned.context_length)
    assert shards_key_for(tuned, "ds-1", "tok-1") == f"ds-1/tok-1/{tag}"
    manifest = DatasetManifest(version="ds-1", created_at="", services=[], documents=[], stats=DatasetStats())
    spec = shards_job_spec(
        manifest=manifest,
        tokenizer_version="tok-1",
        artifact_bucket="art",
        job_name="sh-1",
        answer_tuning=tuned.answer_tuning,
        block_size=tuned.context_length,
    )
    assert spec.hyperparameters["output_uri"] == f"s3://art/shards/ds-1/tok-1/{tag}/"
    assert spec.hyperparameters["block_size"] == "256"
    assert '"share":0.1' in spec.hyperparameters["answer_tuning"]
