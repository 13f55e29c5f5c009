"""The LoRA job's :class:`~docllm.ports.jobs.JobSpec` (light, no torch): what the train stage submits
for a family whose method is ``lora``.

It runs in the training image (``containers/train/``, which installs the ``ml`` extra with PEFT) with
the entry point :data:`ENTRY_POINT`; the image's ``train`` script runs it as one process. Channels:
``base_model`` (the base's Hugging Face directory, from :attr:`LoraConfig.base_model_uri`) and
``dataset`` (the dataset version: ``train.jsonl``, ``validation.jsonl``, ``manifest.json``).
Artefacts go to ``s3://{artifact_bucket}/models/{family}/{model_version}/`` like any training job's:
``hf/`` (merged), ``adapter/``, ``data/``, ``subset.json``, ``history.jsonl`` and ``result.json`` last.

Example
-------
>>> from docllm.lora.config import LoraConfig
>>> cfg = LoraConfig(base_model_uri="s3://art/models/tiny-s3/v3/hf/", max_steps=100)
>>> spec = lora_job_spec(family="tiny-s3-lora", lora=cfg, dataset_version="ds-2",
...     dataset_uri="s3://art/datasets/ds-2/", tokenizer_version="tok-1", artifact_bucket="art",
...     job_name="lora-tiny-s3-ds-2", base_model_version="v3")
>>> spec.image, spec.entry_point, sorted(spec.channels), spec.hyperparameters["output_uri"]
('train', 'docllm.jobs.lora_job', ['base_model', 'dataset'], 's3://art/models/tiny-s3-lora/lora-tiny-s3-ds-2/')
"""

from __future__ import annotations

from docllm.lora.config import LoraConfig
from docllm.ports.jobs import JobSpec

ENTRY_POINT = "docllm.jobs.lora_job"


def lora_job_spec(
    *,
    family: str,
    lora: LoraConfig,
    dataset_version: str,
    dataset_uri: str,
    tokenizer_version: str,
    artifact_bucket: str,
    job_name: str,
    model_version: str | None = None,
    base_model_version: str | None = None,
    instance_type: str = "ml.g5.xlarge",
    max_runtime_s: int = 6 * 3600,
    tags: dict[str, str] | None = None,
) -> JobSpec:
    """A SageMaker-shaped job that trains a LoRA adapter for ``family`` (module docstring).

    ``tokenizer_version`` is the base model's tokenizer (LoRA never changes it); it is recorded in
    the result and the "Model Trained" event like a trained model's.
    """
    version = model_version or job_name
    prefix = f"s3://{artifact_bucket}/models/{family}/{version}"
    hyperparameters = {
        "family": family,
        "model_version": version,
        "dataset_version": dataset_version,
        "tokenizer_version": tokenizer_version,
        "output_uri": f"{prefix}/",
        "lora_config": lora.model_dump_json(exclude_defaults=True),
    }
    if base_model_version:
        hyperparameters["base_model_version"] = base_model_version
    return JobSpec(
        name=job_name,
        image="train",
        entry_point=ENTRY_POINT,
        hyperparameters=hyperparameters,
        channels={"base_model": lora.base_model_uri, "dataset": dataset_uri},
        output_uri=f"{prefix}/sagemaker/",
        instance_type=instance_type,
        max_runtime_s=max_runtime_s,
        tags={"docllm:family": family, "docllm:dataset": dataset_version, "docllm:method": "lora", **(tags or {})},
    )
