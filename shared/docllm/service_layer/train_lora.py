"""Train stage, method ``lora``: an adapter on a base model, trained on the dataset version's Q&A pairs.

A LoRA family needs no tokenizer or shards of its own: the base model brings its tokenizer, and the
job (``docllm.jobs.lora_job``) builds its prompt/completion pairs from the dataset version's
``train.jsonl``. So the train stage launches it on "Dataset Built" (``train.handle_train_event``),
and the tokenizer stage skips the family.

The base (``families.yaml``, ``lora:``) is either the champion of another family (``base_family``:
its Hugging Face export, its version and tokenizer version are recorded) or an approved Hugging
Face directory the organisation uploaded (``base_model_uri``); never a hub id.

On completion the model record names the merged export as ``export_uri`` (what evaluation, the gate,
Bedrock Custom Model Import and the merged-weights serving use), and records what only LoRA has:
``adapter_uri`` (PEFT files, vLLM ``--lora-modules``), ``base_model_uri``/``base_model_version``,
``r``, ``alpha`` and the TF-IDF ``subset`` summary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from docllm.bootstrap import Platform
from docllm.events.contracts import ModelTrained
from docllm.exceptions import PermanentError
from docllm.ports.state import Put
from docllm.records import JobRecord
from docllm.service_layer.jobs import MODELS_PK, Completion, champion_model, digest, job_name, read_result
from docllm.service_layer.jobs import launch as launch_job

if TYPE_CHECKING:
    from docllm.training.families import ModelFamily

STAGE = "train"
METHOD = "lora"
#: Result fields reported as the model's training metrics (the gate reads ``unigram_val_loss``).
_METRICS = {
    "final_train_loss",
    "final_val_loss",
    "best_val_loss",
    "unigram_val_loss",
    "initial_val_loss",
    "tokens_seen",
    "completion_tokens_seen",
    "steps",
    "elapsed_s",
    "tokens_per_s",
    "n_params",
    "trainable_params",
}


class NoBaseModelError(PermanentError):
    """The LoRA family's base family has no champion (or its champion has no training record)."""


def base_of(p: Platform, family: ModelFamily) -> tuple[str, str | None, str]:
    """``(base_model_uri, base_model_version, tokenizer_version)`` of a LoRA family's base.

    A base family's champion: its export, version and tokenizer version from its model record. An
    uploaded base: its URI; no version; its tokenizer (files in its directory) named by the URI's digest.
    """
    lora = family.lora
    if lora is None:
        raise PermanentError(f"family {family.name} has no 'lora' section")
    if lora.base_model_uri:
        return lora.base_model_uri, None, f"base-{digest(lora.base_model_uri)}"
    base_family = str(lora.base_family)
    champion, model = champion_model(p, base_family)
    if not champion:
        raise NoBaseModelError(
            f"family {family.name} adapts the champion of {base_family}, which has none yet: "
            f"train and approve {base_family} first"
        )
    if model is None or not model.get("export_uri"):
        raise NoBaseModelError(f"{base_family}'s champion {champion} has no training record with an export")
    export = str(model["export_uri"])
    # A base registered without a tokenizer record (approved from outside the chain) brings its own files.
    return export, str(champion), str(model.get("tokenizer_version") or f"base-{digest(export)}")


def launch(
    p: Platform,
    family: ModelFamily,
    dataset_version: str,
    tokenizer_version: str,
    request_id: str,
    *,
    train_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Submit the LoRA job of ``family`` on ``dataset_version`` (``tokenizer_version`` is ignored: the
    base's is used). ``train_overrides`` are LoraConfig fields on top of the family's ``lora.config``."""
    from docllm.dataset.versions import dataset_prefix
    from docllm.lora.config import LoraConfig
    from docllm.lora.exceptions import LoraConfigError
    from docllm.lora.launch import lora_job_spec

    del tokenizer_version  # a LoRA model keeps its base's tokenizer
    base_uri, base_version, base_tokenizer = base_of(p, family)
    assert family.lora is not None  # base_of checked
    try:
        cfg = LoraConfig.from_overrides({**family.lora.config, **(train_overrides or {}), "base_model_uri": base_uri})
    except LoraConfigError as e:
        raise PermanentError(f"families.{family.name}.lora.config: {e}") from e
    bucket = p.settings.artifact_bucket
    # One job per request and base: a redelivery finds the same name, a new champion trains anew.
    name = job_name(f"lora-{family.name}"[:24], digest(dataset_version, base_uri, request_id), p)
    spec = lora_job_spec(
        family=family.name,
        lora=cfg,
        dataset_version=dataset_version,
        dataset_uri=dataset_prefix(bucket, dataset_version),
        tokenizer_version=base_tokenizer,
        artifact_bucket=bucket,
        job_name=name,
        base_model_version=base_version,
        instance_type=family.instance_type,
        max_runtime_s=family.max_runtime_s,
    )
    outcome = launch_job(
        p,
        spec,
        STAGE,
        {
            "family": family.name,
            "dataset_version": dataset_version,
            "tokenizer_version": base_tokenizer,
            "checkpoint_uri": "",
            "request_id": request_id,
            "method": METHOD,
            "base_model_uri": base_uri,
            "base_model_version": base_version or "",
        },
    )
    return {"job": name, "outcome": outcome, "method": METHOD, "base_model_version": base_version}


def complete(p: Platform, record: JobRecord) -> Completion:
    """The LoRA job finished: register the merged model with its adapter and announce "Model Trained"."""
    from docllm.lora.result import LoraJobResult

    result = LoraJobResult.model_validate(read_result(p, record.output_uri))
    ctx = record.context
    prefix = record.output_uri.rstrip("/") + "/"
    export_uri = prefix + result.export_path.strip("/") + "/"
    adapter_uri = prefix + result.adapter_path.strip("/") + "/"
    metrics = {k: float(v) for k, v in result.model_dump(include=_METRICS).items() if v is not None}
    cfg = result.train_config
    item = {
        **ctx,
        "version": result.model_version,
        "job": record.name,
        "method": METHOD,
        "export_uri": export_uri,
        "adapter_uri": adapter_uri,
        "base_model_uri": result.base_model.uri,
        "base_model_version": result.base_model.version or ctx.get("base_model_version") or None,
        "base_architecture": result.base_model.architecture,
        "r": int(cfg.get("r", 8)),
        "alpha": int(cfg.get("alpha", 16)),
        "target_modules": cfg.get("target_modules", "all-linear"),
        "trainable_params": result.trainable_params,
        "subset": result.subset,
        "subset_uri": prefix + result.subset_path if result.subset_path else None,
        "metrics": metrics,
    }
    item = {k: v for k, v in item.items() if v is not None}  # absent, not null: the record's readers use get()
    return Completion(
        event=ModelTrained(
            model_version=result.model_version,
            family=ctx["family"],
            job_name=record.name,
            dataset_version=ctx["dataset_version"],
            tokenizer_version=ctx.get("tokenizer_version") or "",
            export_uri=export_uri,
            checkpoint_uri=None,
            metrics=metrics,
            request_id=ctx.get("request_id") or None,
        ),
        writes=[Put(MODELS_PK, result.model_version, item)],
    )
