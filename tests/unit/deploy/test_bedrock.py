"""Bedrock Custom Model Import: which exports are refused (and why), and the import request."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters

from docllm.deploy import DeploymentSpec, bedrock_import_request, bedrock_refusal
from docllm.exceptions import ConfigurationError

LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"]
ROLE = "arn:aws:iam::123456789012:role/docllm-dev-bedrock-import"
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def spec(**overrides: Any) -> DeploymentSpec:
    base: dict[str, Any] = {
        "model_version": "v7",
        "family": "tiny",
        "export_uri": "s3://docllm-artifacts/models/tiny/v7/hf/",
        "target": "bedrock",
        "role_arn": ROLE,
        "kms_key_id": KMS,
    }
    return DeploymentSpec(**{**base, **overrides})


@pytest.mark.parametrize(
    ("files", "config"),
    [
        (FILES, LLAMA),
        ([*FILES, "tokenizer.model"], LLAMA),
        (FILES, {"architectures": ["GPTBigCodeForCausalLM"]}),
        (
            [*FILES[:1], "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", *FILES[2:]],
            LLAMA,
        ),
    ],
    ids=["llama", "with-sentencepiece", "gptbigcode", "sharded"],
)
def test_llama_and_gptbigcode_exports_are_accepted(files: list[str], config: dict[str, Any]) -> None:
    assert bedrock_refusal(files, config) is None


def test_gpt_neox_export_is_refused_naming_the_architecture() -> None:
    reason = bedrock_refusal(FILES, {"architectures": ["GPTNeoXForCausalLM"]})
    assert reason is not None
    assert "GPTNeoXForCausalLM" in reason and "LlamaForCausalLM" in reason


def test_missing_tokenizer_files_are_each_named() -> None:
    reason = bedrock_refusal(["config.json", "model.safetensors"], LLAMA)
    assert reason == "missing tokenizer.json, tokenizer_config.json"


def test_pickled_weights_are_refused() -> None:
    files = ["config.json", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json"]
    assert bedrock_refusal(files, LLAMA) == "weights are not in .safetensors format (found pytorch_model.bin)"


def test_no_config_and_no_weights_give_every_reason() -> None:
    reason = bedrock_refusal(["tokenizer.json"], None)
    assert reason == "missing config.json, tokenizer_config.json; no .safetensors weights"


def test_files_in_subdirectories_do_not_count() -> None:
    files = ["config.json", "tokenizer.json", "tokenizer_config.json", "checkpoints/model.safetensors"]
    assert bedrock_refusal(files, LLAMA) == "no .safetensors weights"


@pytest.mark.parametrize("archs", [None, [], ["LlamaForCausalLM", "LlamaModel"], "LlamaForCausalLM"])
def test_config_must_name_exactly_one_architecture(archs: Any) -> None:
    reason = bedrock_refusal(FILES, {"architectures": archs})
    assert reason is not None and "exactly one architecture" in reason


def test_import_request_is_valid_for_the_service_model() -> None:
    shape = botocore.session.get_session().get_service_model("bedrock").operation_model("CreateModelImportJob")
    assert shape.input_shape is not None
    for deployment in (spec(), spec(kms_key_id=None), spec(subnets=["subnet-1"], security_group_ids=["sg-1"])):
        validate_parameters(bedrock_import_request(deployment, stage="dev"), shape.input_shape)


def test_import_request_names_job_and_model_deterministically_and_encrypts() -> None:
    req = bedrock_import_request(spec(), stage="dev")
    assert req == bedrock_import_request(spec(), stage="dev")
    assert req["jobName"] == req["importedModelName"]
    assert req["jobName"].startswith("docllm-dev-tiny-")
    assert req["roleArn"] == ROLE
    assert req["importedModelKmsKeyId"] == KMS
    assert req["modelDataSource"] == {"s3DataSource": {"s3Uri": "s3://docllm-artifacts/models/tiny/v7/hf/"}}
    assert {"key": "docllm:model-version", "value": "v7"} in req["importedModelTags"]
    assert (
        req["clientRequestToken"] != bedrock_import_request(spec(model_version="v8"), stage="dev")["clientRequestToken"]
    )


def test_import_request_refuses_what_bedrock_would() -> None:
    with pytest.raises(ConfigurationError, match="role_arn"):
        bedrock_import_request(spec(role_arn=None), stage="dev")
    with pytest.raises(ConfigurationError, match="S3 URI pattern"):
        bedrock_import_request(spec(export_uri="s3://Bucket_Upper/models/v=7/"), stage="dev")
