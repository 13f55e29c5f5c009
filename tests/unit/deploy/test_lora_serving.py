"""A LoRA model on SageMaker is served as its base with the adapter (vLLM ``--enable-lora
--lora-modules``): the request is valid for botocore's model, the serving image turns the
environment into vLLM's LoRA flags with the adapter under the model version's name (what a request
naming no model gets), and the deployment record says how the adapter is served."""

from __future__ import annotations

from typing import Any

import pytest

from docllm.deploy import DeploymentSpec, build_sagemaker_requests
from docllm.deploy.spec import LoraAdapter, vllm_lora_rank
from docllm.service_layer.deploy import adapter_serving
from tests.unit.containers.test_serve_entry import flags, serve
from tests.unit.deploy.test_sagemaker_requests import spec, validate

LORA_MODEL: dict[str, Any] = {
    "version": "lora-v2",
    "family": "tiny-s3-lora",
    "method": "lora",
    "export_uri": "s3://docllm-artifacts/models/tiny-s3-lora/lora-v2/hf/",
    "adapter_uri": "s3://docllm-artifacts/models/tiny-s3-lora/lora-v2/adapter/",
    "base_model_uri": "s3://docllm-artifacts/models/tiny-s3/v1/hf/",
    "base_model_version": "v1",
    "r": 12,
    "alpha": 24,
}


def lora_spec() -> DeploymentSpec:
    return spec(model_version="lora-v2", family="tiny-s3-lora", lora_adapter=LoraAdapter.of_model(LORA_MODEL))


def test_only_a_lora_record_with_adapter_and_base_is_served_as_an_adapter() -> None:
    adapter = LoraAdapter.of_model(LORA_MODEL)
    assert adapter is not None
    assert (adapter.adapter_uri, adapter.base_uri, adapter.base_name, adapter.max_rank) == (
        LORA_MODEL["adapter_uri"], LORA_MODEL["base_model_uri"], "v1", 12,
    )  # fmt: skip
    assert LoraAdapter.of_model({**LORA_MODEL, "method": "pretrain"}) is None
    assert LoraAdapter.of_model({k: v for k, v in LORA_MODEL.items() if k != "adapter_uri"}) is None
    assert adapter_serving("v9", {"method": "distill", "export_uri": "s3://a/b/"}, served="merged") == {}


@pytest.mark.parametrize(("r", "rank"), [(1, 8), (8, 8), (12, 16), (64, 64), (300, 320)])
def test_the_max_lora_rank_is_one_vllm_accepts(r: int, rank: int) -> None:
    assert vllm_lora_rank(r) == rank


def test_sagemaker_serves_the_base_with_the_adapter_channel_and_lora_flags() -> None:
    requests = build_sagemaker_requests(lora_spec(), stage="dev")
    validate("sagemaker", "CreateModel", requests.model)
    container = requests.model["PrimaryContainer"]
    assert container["ModelDataSource"]["S3DataSource"]["S3Uri"] == LORA_MODEL["base_model_uri"]
    (channel,) = container["AdditionalModelDataSources"]
    assert channel["ChannelName"] == "adapter"
    assert channel["S3DataSource"] == {
        "S3Uri": LORA_MODEL["adapter_uri"], "S3DataType": "S3Prefix", "CompressionType": "None",
    }  # fmt: skip
    env = container["Environment"]
    assert env["SM_VLLM_ENABLE_LORA"] == "true" and env["SM_VLLM_MAX_LORA_RANK"] == "16"
    assert env["SM_VLLM_LORA_MODULES"] == "lora-v2=/opt/ml/additional-model-data-sources/adapter"
    assert env["DOCLLM_BASE_MODEL_NAME"] == "v1" and env["DOCLLM_MODEL_VERSION"] == "lora-v2"
    # The serving image runs vLLM with the base under its name and the adapter under the version's.
    command = flags(serve.vllm_command(["serve"], env))
    assert command[command.index("--served-model-name") + 1] == "v1"
    assert "--enable-lora" in command
    assert command[command.index("--lora-modules") + 1] == "lora-v2=/opt/ml/additional-model-data-sources/adapter"
    assert command[command.index("--max-lora-rank") + 1] == "16"


def test_a_model_without_an_adapter_keeps_the_plain_request() -> None:
    container = build_sagemaker_requests(spec(), stage="dev").model["PrimaryContainer"]
    assert "AdditionalModelDataSources" not in container
    assert not any(k.startswith("SM_VLLM_") and "LORA" in k for k in container["Environment"])
    assert "DOCLLM_BASE_MODEL_NAME" not in container["Environment"]


def test_the_deployment_record_says_how_the_adapter_is_served() -> None:
    record = adapter_serving("lora-v2", LORA_MODEL, served="adapter")["lora"]
    assert record["served"] == "adapter" and record["adapter_name"] == "lora-v2"
    assert (record["adapter_uri"], record["base_uri"], record["base_model_version"]) == (
        LORA_MODEL["adapter_uri"], LORA_MODEL["base_model_uri"], "v1",
    )  # fmt: skip
    assert record["vllm_args"] == [
        "--enable-lora", "--max-lora-rank", "16", "--max-loras", "1",
        "--lora-modules", "lora-v2=/opt/ml/additional-model-data-sources/adapter",
    ]  # fmt: skip
