"""Bedrock Custom Model Import: which exports it accepts, and the ``CreateModelImportJob`` request.

Bedrock imports a Hugging Face directory from S3 and detects the architecture
itself; it serves a fixed list of architectures (the user guide names Llama,
Mistral, Mixtral, Flan, Qwen and GPTBigCode among others, see docs/serving.md).
Of the architectures our export writes (docs/model.md: Llama, GPTBigCode,
GPTNeoX) only the first two are on that list, so anything else is refused here,
with the reason, before an import job is paid for and fails minutes later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from docllm.deploy.names import version_digest, versioned_name
from docllm.deploy.spec import DeploymentSpec
from docllm.exceptions import ConfigurationError

#: ``config.json`` ``architectures`` values docllm exports and Bedrock imports.
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "GPTBigCodeForCausalLM")
#: Files Bedrock needs beside the weights (``tokenizer.model`` too, when the tokenizer has one).
REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
_OTHER_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".gguf")

# Bedrock's own patterns (botocore service model): the URI path allows fewer characters than S3 does.
_BEDROCK_S3_URI = re.compile(
    r"^s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?$"
)


def bedrock_refusal(files: Iterable[str], config: Mapping[str, Any] | None) -> str | None:
    """Why Bedrock would not import this export, or ``None`` when it would.

    Parameters
    ----------
    files:
        Names of the files at the top of the export (S3 keys relative to the
        prefix); files in sub-directories are not part of an import.
    config:
        The parsed ``config.json``, or ``None`` when it could not be read.

    Examples
    --------
    >>> files = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    >>> bedrock_refusal(files, {"architectures": ["LlamaForCausalLM"]}) is None
    True
    >>> bedrock_refusal(files, {"architectures": ["GPTNeoXForCausalLM"]})
    'architecture GPTNeoXForCausalLM is not importable (Bedrock accepts LlamaForCausalLM, GPTBigCodeForCausalLM)'
    """
    top = {f for f in files if f and "/" not in f.strip("/")}
    reasons: list[str] = []
    missing = [name for name in REQUIRED_FILES if name not in top]
    if missing:
        reasons.append(f"missing {', '.join(missing)}")
    if not any(f.endswith(".safetensors") for f in top):
        others = sorted(f for f in top if f.endswith(_OTHER_WEIGHTS))
        reasons.append(
            f"weights are not in .safetensors format (found {', '.join(others)})"
            if others
            else "no .safetensors weights"
        )
    if config is not None:
        archs = config.get("architectures")
        if not isinstance(archs, list) or len(archs) != 1 or not isinstance(archs[0], str):
            reasons.append(f"config.json must name exactly one architecture, found {archs!r}")
        elif archs[0] not in SUPPORTED_ARCHITECTURES:
            reasons.append(
                f"architecture {archs[0]} is not importable (Bedrock accepts {', '.join(SUPPORTED_ARCHITECTURES)})"
            )
    elif "config.json" in top:
        reasons.append("config.json is not a JSON object")
    return "; ".join(reasons) or None


def bedrock_import_request(spec: DeploymentSpec, *, stage: str) -> dict[str, Any]:
    """``CreateModelImportJob`` keyword arguments for ``spec``.

    Job and model share the versioned name; ``clientRequestToken`` is derived
    from it too, so a redelivered request is the same request to Bedrock.

    Raises
    ------
    ConfigurationError
        No ``role_arn``; an export URI Bedrock's pattern refuses; half a VPC.

    Examples
    --------
    >>> spec = DeploymentSpec(model_version="v7", family="tiny", export_uri="s3://art/models/tiny/v7/hf/",
    ...                       target="bedrock", role_arn="arn:aws:iam::123456789012:role/import")
    >>> req = bedrock_import_request(spec, stage="dev")
    >>> req["modelDataSource"], req["jobName"] == req["importedModelName"]
    ({'s3DataSource': {'s3Uri': 's3://art/models/tiny/v7/hf/'}}, True)
    """
    spec.require("role_arn")
    uri = spec.export_uri if spec.export_uri.endswith("/") else spec.export_uri + "/"
    if not _BEDROCK_S3_URI.match(uri):
        raise ConfigurationError(
            f"export_uri {spec.export_uri!r} does not match Bedrock's S3 URI pattern "
            "(lowercase bucket; path of letters, digits and -!_*'().)"
        )
    name = versioned_name(stage, spec.family, spec.model_version)
    tags = {
        **spec.tags,
        "docllm:stage": stage,
        "docllm:family": spec.family,
        "docllm:model-version": spec.model_version,
    }
    tag_list = [{"key": k, "value": v} for k, v in sorted(tags.items())]
    request: dict[str, Any] = {
        "jobName": name,
        "importedModelName": name,
        "roleArn": spec.role_arn,
        "modelDataSource": {"s3DataSource": {"s3Uri": uri}},
        "jobTags": tag_list,
        "importedModelTags": tag_list,
        "clientRequestToken": f"{name}-{version_digest(stage, spec.model_version)}",
    }
    if spec.kms_key_id:
        request["importedModelKmsKeyId"] = spec.kms_key_id
    if spec.subnets or spec.security_group_ids:
        if not (spec.subnets and spec.security_group_ids):
            raise ConfigurationError("a VPC import job needs both subnets and security_group_ids")
        request["vpcConfig"] = {"subnetIds": list(spec.subnets), "securityGroupIds": list(spec.security_group_ids)}
    return request
