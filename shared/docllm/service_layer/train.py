"""Train stage: launch the training job of a model family on tokenized shards.

How the job is made depends on the family's method (``training/families.py``): ``pretrain`` is
here; every other method has its own module, found by :data:`METHOD_MODULES`, which defines
``launch(p, family, dataset_version, tokenizer_version, request_id, *, train_overrides)`` and may
define ``complete(p, record) -> Completion`` (a job whose result is not a ``TrainingJobResult``).
Every launch records ``method`` in the job's context; completion dispatches on it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from docllm.bootstrap import Platform
from docllm.events.contracts import (
    DatasetBuildRequested,
    DatasetBuilt,
    ModelTrained,
    ShardsBuilt,
    TrainingRequested,
    parse_detail,
    to_bus,
)
from docllm.events.envelope import BusEvent
from docllm.ports.state import Put
from docllm.records import JobRecord
from docllm.service_layer.jobs import MODELS_PK, SHARDS_PK, Completion, digest, job_name, launch, read_result

if TYPE_CHECKING:
    from docllm.training.families import ModelFamily

STAGE = "train"
#: The module (under docllm.service_layer) that launches and completes each method other than pretrain.
METHOD_MODULES = {
    "continue": "train_continue",
    "lora": "train_lora",
    "distill": "train_distill",
    "bedrock-customization": "customize",
}
_METRICS = {
    "final_train_loss",
    "final_val_loss",
    "best_val_loss",
    "unigram_val_loss",
    "tokens_seen",
    "steps",
    "elapsed_s",
    "tokens_per_s",
    "n_params",
}


#: Methods that train on the dataset version itself, with no tokenizer or shards of the family's own:
#: the train stage launches them on "Dataset Built" (the tokenizer stage skips their families).
DATASET_METHODS = ("lora", "bedrock-customization")


def handle_train_event(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    event = BusEvent.model_validate(raw)
    if event.detail_type == DatasetBuilt.DETAIL_TYPE:
        return _on_dataset_built(p, parse_detail(event, DatasetBuilt))
    if event.detail_type == ShardsBuilt.DETAIL_TYPE:
        built = parse_detail(event, ShardsBuilt)
        if not (built.train_after and built.family):
            return {"outcome": "no training asked for"}
        return _launch(p, built.family, built.dataset_version, built.tokenizer_version, built.request_id or "")
    request = parse_detail(event, TrainingRequested)
    if request.dataset_version and request.tokenizer_version:
        return _launch(
            p,
            request.family,
            request.dataset_version,
            request.tokenizer_version,
            request.request_id,
            train_overrides=request.train_config,
        )
    # Nothing named: run the whole chain for this family (dataset → tokenizer → shards → train).
    p.bus.publish(
        [to_bus(DatasetBuildRequested(family=request.family, train_after=True, request_id=request.request_id))]
    )
    return {"outcome": "dataset build requested", "family": request.family}


def _on_dataset_built(p: Platform, built: DatasetBuilt) -> dict[str, Any]:
    """A dataset version for a family whose method trains on it directly (:data:`DATASET_METHODS`):
    launch now. Every other family goes on through the tokenizer and shards stages."""
    from docllm.training.families import family as family_named

    if not (built.train_after and built.family):
        return {"outcome": "no training asked for"}
    method = family_named(built.family).method
    if method not in DATASET_METHODS:
        return {"outcome": f"method {method} trains on shards: not yet", "family": built.family}
    return _launch(p, built.family, built.dataset_version, "", built.request_id or "")


def _launch(
    p: Platform,
    family_name: str,
    dataset_version: str,
    tokenizer_version: str,
    request_id: str,
    *,
    train_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from docllm.training.families import family as family_named

    family = family_named(family_name)
    if family.method != "pretrain":
        module = importlib.import_module(f"docllm.service_layer.{METHOD_MODULES[family.method]}")
        result: dict[str, Any] = module.launch(
            p, family, dataset_version, tokenizer_version, request_id, train_overrides=train_overrides
        )
        return result
    return launch_pretrain(p, family, dataset_version, tokenizer_version, request_id, train_overrides=train_overrides)


def launch_pretrain(
    p: Platform,
    family: ModelFamily,
    dataset_version: str,
    tokenizer_version: str,
    request_id: str,
    *,
    train_overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    init_uri: str | None = None,
    extra_context: dict[str, str] | None = None,
    method: str = "pretrain",
) -> dict[str, Any]:
    """Train ``family`` on its shards of the dataset with the tokenizer: the full run every other
    shard-based method (continue, distill) builds on with its overrides and context."""
    from docllm.service_layer.shards import shards_key_for
    from docllm.training.launch import train_job_spec

    family_name = family.name
    shards_key = shards_key_for(family, dataset_version, tokenizer_version)
    shards = p.state.get(SHARDS_PK, shards_key)
    from docllm.tokenizer.artifacts import find_tokenizer

    tokenizer = find_tokenizer(p.state, tokenizer_version)
    if shards is None or tokenizer is None:
        raise LookupError(f"no shards for dataset {dataset_version} with tokenizer {tokenizer_version}")
    # One job per request: a redelivery finds the same name, a new request trains again.
    name = job_name(f"train-{family_name}"[:24], digest(dataset_version, tokenizer_version, request_id), p)
    spec = train_job_spec(
        family=family,
        dataset_version=dataset_version,
        tokenizer_version=tokenizer_version,
        shards_uri=shards["shards_uri"],
        tokenizer_uri=tokenizer.artifacts_uri,
        artifact_bucket=p.settings.artifact_bucket,
        job_name=name,
        train_overrides=train_overrides,
        model_overrides={**family.model, **(model_overrides or {})} or None,
        tags={"docllm:method": method},
    )
    if init_uri:
        # A continued run starts from these weights (the job's ``init`` channel).
        spec = spec.model_copy(update={"channels": {**spec.channels, "init": init_uri}})
    outcome = launch(
        p,
        spec,
        STAGE,
        {
            "family": family_name,
            "dataset_version": dataset_version,
            "tokenizer_version": tokenizer_version,
            "checkpoint_uri": spec.checkpoint_uri or "",
            # Which shards (answer tuning makes a family's own): the model record keeps it for the lineage.
            "shards_key": shards_key,
            "request_id": request_id,
            "method": method,
            **(extra_context or {}),
        },
    )
    return {"job": name, "outcome": outcome, "method": method}


def complete_job(p: Platform, record: JobRecord) -> Completion:
    """The training job finished: register the model version and announce it (a method's own
    ``complete`` where its module has one)."""
    method = record.context.get("method") or "pretrain"
    if method in METHOD_MODULES:
        module = importlib.import_module(f"docllm.service_layer.{METHOD_MODULES[method]}")
        if hasattr(module, "complete"):
            done: Completion = module.complete(p, record)
            return done
    from docllm.training.result import TrainingJobResult

    trained = TrainingJobResult.model_validate(read_result(p, record.output_uri))
    ctx = record.context
    metrics = {k: float(v) for k, v in trained.model_dump(include=_METRICS).items() if v is not None}
    export_uri = record.output_uri.rstrip("/") + "/" + trained.export_path.strip("/") + "/"
    version = trained.model_version
    item = {"version": version, "job": record.name, "export_uri": export_uri, "metrics": metrics, **ctx}
    return Completion(
        event=ModelTrained(
            model_version=version,
            family=ctx["family"],
            job_name=record.name,
            dataset_version=ctx["dataset_version"],
            tokenizer_version=ctx["tokenizer_version"],
            export_uri=export_uri,
            checkpoint_uri=ctx.get("checkpoint_uri"),
            metrics=metrics,
            request_id=ctx.get("request_id") or None,
        ),
        writes=[Put(MODELS_PK, version, item)],
    )
