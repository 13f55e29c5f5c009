"""LoRA settings: defaults, validation that names the field, the job spec built from them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from docllm.lora.config import LoraConfig
from docllm.lora.exceptions import LoraConfigError
from docllm.lora.launch import ENTRY_POINT, lora_job_spec
from docllm.lora.subset import SubsetConfig

BASE = "s3://artifacts/models/tiny-s3/v3/hf/"


def test_defaults_are_a_usable_run() -> None:
    cfg = LoraConfig(base_model_uri=BASE)
    assert (cfg.r, cfg.alpha, cfg.scaling, cfg.target_modules) == (8, 16.0, 2.0, "all-linear")
    assert cfg.subset is None and cfg.max_steps is None and cfg.epochs == 1
    assert LoraConfig.model_validate_json(cfg.model_dump_json()) == cfg


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"base_model_uri": "meta-llama/Llama-3.1-8B"}, "lora_config.base_model_uri"),  # a hub id: never
        ({"base_model_uri": "https://huggingface.co/x/y"}, "lora_config.base_model_uri"),
        ({"base_model_uri": BASE, "r": 0}, "lora_config.r"),
        ({"base_model_uri": BASE, "dropout": 1.0}, "lora_config.dropout"),
        ({"base_model_uri": BASE, "target_modules": ["q_proj", "no such"]}, "lora_config.target_modules"),
        ({"base_model_uri": BASE, "target_modules": []}, "lora_config.target_modules"),
        ({"base_model_uri": BASE, "lr": 0.1}, "lora_config.lr"),  # a typo is an error, not a default
        ({"base_model_uri": BASE, "subset": {"share": 2}}, "lora_config.subset.share"),
        ({"base_model_uri": BASE, "answer_tuning": {"distractors": 5}}, "lora_config.answer_tuning.distractors"),
    ],
)
def test_an_invalid_setting_is_named(values: dict[str, object], field: str) -> None:
    with pytest.raises(LoraConfigError) as e:
        LoraConfig.from_overrides(values)
    assert e.value.field.startswith(field)


def test_target_modules_take_a_list_of_layer_names() -> None:
    cfg = LoraConfig.from_overrides({"base_model_uri": BASE, "target_modules": ["q_proj", "v_proj"]})
    assert cfg.target_modules == ("q_proj", "v_proj")


def test_the_job_spec_carries_the_config_channels_and_output() -> None:
    cfg = LoraConfig(base_model_uri=BASE, r=16, max_steps=200, subset=SubsetConfig(share=0.4))
    spec = lora_job_spec(
        family="s3-lora",
        lora=cfg,
        dataset_version="ds-9",
        dataset_uri="s3://art/datasets/ds-9/",
        tokenizer_version="tok-3",
        artifact_bucket="art",
        job_name="lora-s3-ds-9-abc",
        base_model_version="v3",
    )
    assert spec.image == "train" and spec.entry_point == ENTRY_POINT == "docllm.jobs.lora_job"
    assert spec.channels == {"base_model": BASE, "dataset": "s3://art/datasets/ds-9/"}
    hp = spec.hyperparameters
    assert LoraConfig.from_overrides(json.loads(hp["lora_config"])) == cfg
    assert hp["output_uri"] == "s3://art/models/s3-lora/lora-s3-ds-9-abc/"
    assert (hp["base_model_version"], hp["tokenizer_version"], hp["family"]) == ("v3", "tok-3", "s3-lora")
    assert spec.tags["docllm:method"] == "lora"


def test_the_light_modules_import_without_torch_transformers_or_peft() -> None:
    """What a Lambda (the train stage launching the job) imports: no ML stack."""
    code = (
        "import sys, docllm.lora.config, docllm.lora.data, docllm.lora.subset, docllm.lora.result,"
        " docllm.lora.launch; assert not {'torch', 'transformers', 'peft'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
