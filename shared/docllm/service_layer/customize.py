"""Customize stage: a ``bedrock-customization`` family's model, made by Amazon Bedrock.

Launch (``train.METHOD_MODULES``: the train stage calls :func:`launch` for such a family once its
dataset is built). The family's JSONL files are built from the dataset version by the same builder
as the LoRA path (:mod:`docllm.customize.data`: prompt/completion for ``FINE_TUNING``, input for
``CONTINUED_PRE_TRAINING``), written under ``customizations/<family>/<job>/`` in the artifact bucket
with ``data.json`` (what they hold), then a job record of stage ``customize`` is kept and
``CreateModelCustomizationJob`` is called (:attr:`Platform.customizer`). As for every job, the name
is deterministic per (dataset version, request), the record is written before the submit, and a
redelivery adopts the job an earlier attempt started.

Completion. Bedrock sends "Model Customization Job State Change" to the default bus;
``CustomizeJobStateRule`` routes the ended states of our jobs (name prefix ``docllm-<stage>-``) to
``CustomizeFunction`` (:func:`handle_customization_event`). The stage reads the job back
(``GetModelCustomizationJob``: events are best effort and the describe is authoritative) and
:func:`settle` records the outcome: Completed → a model record (``export_uri`` = the custom
model's ARN, ``method`` bedrock-customization, Bedrock's losses) and "Model Trained", in one outbox
commit with the job record; Failed or Stopped → "Stage Failed" with Bedrock's reason. :func:`settle`
is also what a poller calls for a job whose event never came.

Afterwards. The evaluate stage evaluates such a model from Bedrock's own metrics
(:func:`evaluate_custom_model`: no evaluation job, since the weights stay in Bedrock), the gate
registers and decides it like any other, and the deploy stage refuses it (:func:`deploy_refusal`:
Bedrock serves it, with capacity bought for it). docs/customization.md, "Evaluation and the gate".

On the local platform the customizer refuses (Bedrock cannot run locally): the job record ends
Failed with that reason and "Stage Failed" is published, at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docllm.bootstrap import Platform
from docllm.customize.data import (
    CustomizationData,
    build_continued_pretraining,
    build_fine_tuning,
    limits_for,
)
from docllm.customize.events import CustomizationJobStateChangeEvent
from docllm.events.contracts import ModelTrained, StageFailed
from docllm.exceptions import ConflictError, NotFoundError, PermanentError, TransientError
from docllm.ports.customization import CustomizationJob, CustomizationSpec
from docllm.ports.objects import split_uri
from docllm.ports.state import Put
from docllm.provenance import provenance
from docllm.records import JOBS_PK, JobRecord, utcnow
from docllm.retries import retry_transient
from docllm.service_layer.jobs import MODELS_PK, Completion, digest, job_name
from docllm.service_layer.outbox import commit

if TYPE_CHECKING:
    from docllm.dataset.versions import SplitRecord
    from docllm.training.families import ModelFamily

STAGE = "customize"
METHOD = "bedrock-customization"
#: Where a family's customization jobs keep their data and Bedrock its output (the service role's scope).
PREFIX = "customizations/"
_ENDED = ("Completed", "Failed", "Stopped")


def launch(
    p: Platform,
    family: ModelFamily,
    dataset_version: str,
    tokenizer_version: str,
    request_id: str,
    *,
    train_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the family's JSONL from the dataset version and start its Bedrock customization job
    (module docstring). ``tokenizer_version`` is unused (Bedrock tokenizes with the base model's
    own); ``train_overrides`` may override Bedrock hyperparameters (string values)."""
    settings = family.bedrock
    if settings is None:  # families.py refuses a bedrock-customization family without its section
        raise PermanentError(f"family {family.name} has no 'bedrock' section")
    name = job_name(f"cust-{family.name}"[:24], digest(dataset_version, request_id), p)
    bucket = p.settings.artifact_bucket
    prefix = f"{PREFIX}{family.name}/{name}/"
    existing = p.state.get(JOBS_PK, name)
    # An earlier delivery got this far: its job ended (a Completed one keeps its name), or it runs.
    if existing is not None and (existing.get("status") != "InProgress" or _job_exists(p, name)):
        return {"job": name, "outcome": "already-launched", "method": METHOD}
    if _run_cancelled(p, request_id):
        # Its pipeline run was cancelled while the dataset was built: the chain stops here, no job.
        stopped = JobRecord(
            name=name,
            stage=STAGE,
            status="Stopped",
            output_uri=f"s3://{bucket}/{prefix}output/",
            context={"family": family.name, "request_id": request_id, "method": METHOD},
            failure_reason=f"pipeline run {request_id} was cancelled",
        )
        with contextlib.suppress(ConflictError):
            p.state.put(JOBS_PK, name, stopped.model_dump(mode="json"), if_absent=True)
        return {"job": name, "outcome": "run cancelled", "method": METHOD}
    data = _build_data(p, family, dataset_version)
    files = data.files()
    for file_name, body in files.items():
        # Deterministic keys: a retry after a crash rewrites the same bytes.
        p.objects.put(bucket, prefix + file_name, body, content_type="application/jsonl")
    summary = data.summary.model_dump_json(indent=1).encode()
    p.objects.put(bucket, prefix + "data.json", summary, content_type="application/json")
    hyperparameters = {**settings.hyperparameters, **{k: str(v) for k, v in (train_overrides or {}).items()}}
    spec = CustomizationSpec(
        job_name=name,
        custom_model_name=name,
        base_model_identifier=settings.base_model_identifier,
        customization_type=settings.customization_type,
        training_uri=f"s3://{bucket}/{prefix}train.jsonl",
        validation_uri=f"s3://{bucket}/{prefix}validation.jsonl" if "validation.jsonl" in files else None,
        output_uri=f"s3://{bucket}/{prefix}output/",
        hyperparameters=hyperparameters,
    )
    context = {
        "family": family.name,
        "dataset_version": dataset_version,
        "tokenizer_version": "",  # the base model's own: none of ours
        "request_id": request_id,
        "method": METHOD,
        "base_model": settings.base_model_identifier,
        "customization_type": settings.customization_type,
        "data_uri": f"s3://{bucket}/{prefix}",
        "train_records": str(data.summary.train_records),
        "validation_records": str(data.summary.validation_records),
        "train_sha256": data.summary.files.get("train.jsonl", ""),
        # What the manifest states of the job (service_layer/manifest.py): the hyperparameters sent,
        # and the code that built the files (Bedrock's training is Bedrock's; the data is ours).
        "hyperparameters": json.dumps(hyperparameters, sort_keys=True),
        "provenance": json.dumps(provenance(), sort_keys=True),
    }
    record = JobRecord(name=name, stage=STAGE, status="InProgress", output_uri=spec.output_uri, context=context)
    # A record already there: an earlier delivery's submit was lost (checked above); submit again.
    with contextlib.suppress(ConflictError):
        p.state.put(JOBS_PK, name, record.model_dump(mode="json"), if_absent=True)
    try:
        p.customizer.submit(spec)
    except ConflictError:
        if not _job_exists(p, name):
            raise
        return {"job": name, "outcome": "already-launched", "method": METHOD}
    except PermanentError as e:
        # Retrying cannot help (refused request, no Bedrock locally): the request fails now, and says why.
        _fail(p, record, f"the customization job could not be started: {e}")
        e.announced = True  # type: ignore[attr-defined]  # lambda_support must not announce it again
        raise
    p.metrics.put("JobsLaunched", 1, dimensions={"stage": STAGE})
    return {"job": name, "outcome": "launched", "method": METHOD, "records": data.summary.train_records}


def _build_data(p: Platform, family: ModelFamily, dataset_version: str) -> CustomizationData:
    """The family's files from the dataset version's splits (downloaded to a temporary directory)."""
    from docllm.answers.tuning import AnswerTuning
    from docllm.dataset.versions import read_split_file

    assert family.bedrock is not None
    kind = family.bedrock.customization_type
    bucket = p.settings.artifact_bucket
    with tempfile.TemporaryDirectory(prefix="docllm-customize-") as tmp:
        splits = ("train", "validation") if kind == "CONTINUED_PRE_TRAINING" else ("train",)
        paths = {split: Path(tmp) / f"{split}.jsonl" for split in splits}
        for split, path in paths.items():
            _download(p, bucket, f"datasets/{dataset_version}/{split}.jsonl", path)

        def source(split: str) -> Callable[[], Iterable[SplitRecord]]:
            return lambda: read_split_file(paths[split])

        if kind == "FINE_TUNING":
            return build_fine_tuning(source("train"), family.answer_tuning or AnswerTuning(), limits=limits_for(kind))
        return build_continued_pretraining(source("train"), source("validation"), limits=limits_for(kind))


def _download(p: Platform, bucket: str, key: str, path: Path) -> None:
    try:
        retry_transient(lambda: p.objects.download_file(bucket, key, path))
    except NotFoundError as e:
        raise PermanentError(f"the dataset has no {key}: {e}") from e


def _job_exists(p: Platform, name: str) -> bool:
    try:
        p.customizer.describe(name)
    except NotFoundError:
        return False
    return True


# --------------------------------------------------------------------------- completion


def handle_customization_event(p: Platform, raw: dict[str, Any]) -> dict[str, str]:
    """Bedrock's "Model Customization Job State Change": settle the job if it is ours."""
    event = CustomizationJobStateChangeEvent.model_validate(raw)
    d = event.detail
    item = p.state.get(JOBS_PK, d.jobName)
    if item is None:
        return {"job": d.jobName, "outcome": "not ours"}
    record = JobRecord.model_validate(item)
    if record.stage != STAGE:
        return {"job": d.jobName, "outcome": "not a customization job"}
    return settle(p, record, expect_ended=d.jobStatus in _ENDED)


def settle(p: Platform, record: JobRecord, *, expect_ended: bool = False) -> dict[str, str]:
    """Record what became of a customization job (module docstring). ``expect_ended``: an event said
    it ended; if Bedrock's describe does not show it yet, the delivery is retried (TransientError)."""
    if record.status in _ENDED:
        return {"job": record.name, "outcome": "already handled"}
    try:
        job = p.customizer.describe(record.name)
    except NotFoundError:
        return _fail(p, record, "Bedrock has no such customization job (deleted, or never started)")
    if job.status in _ENDED and _run_cancelled(p, record.context.get("request_id")):
        # The pipeline run was cancelled or superseded: nothing it made is completed (no model record, no
        # "Model Trained", so nothing is registered); the run record already says why.
        record.status, record.updated_at = "Stopped", utcnow()
        record.failure_reason = f"pipeline run {record.context.get('request_id')} was cancelled"
        commit(p, [Put(JOBS_PK, record.name, record.model_dump(mode="json"))], [])
        return {"job": record.name, "outcome": "run cancelled: recorded Stopped"}
    if job.status == "Completed":
        done = complete_job(p, record, job)
        record.status, record.updated_at = "Completed", utcnow()
        commit(p, [Put(JOBS_PK, record.name, record.model_dump(mode="json")), *done.writes], [done.event])
        return {"job": record.name, "outcome": "completed", "next": done.event.DETAIL_TYPE}
    if job.status in ("Failed", "Stopped"):
        return _fail(p, record, job.failure_message or f"the customization job ended {job.status}")
    if expect_ended:
        raise TransientError(f"the event says {record.name} ended, Bedrock still says {job.status}: retried")
    return {"job": record.name, "outcome": "ignored", "status": job.status}


def complete_job(p: Platform, record: JobRecord, job: CustomizationJob | None = None) -> Completion:
    """The job completed: the model record (the custom model's ARN as its export) and "Model Trained"."""
    job = job or p.customizer.describe(record.name)
    if job.status != "Completed" or not job.custom_model_arn:
        raise PermanentError(f"customization job {record.name} is {job.status} without a custom model")
    ctx = record.context
    version = job.custom_model_name or record.name
    # Bedrock's losses, in the base model's tokens: comparable between this family's models only.
    metrics = {
        k: float(v)
        for k, v in (("final_train_loss", job.training_loss), ("final_val_loss", job.validation_loss))
        if v is not None
    }
    item = {
        **ctx,
        "version": version,
        "job": record.name,
        "export_uri": job.custom_model_arn,
        "custom_model_arn": job.custom_model_arn,
        "base_model_arn": job.base_model_arn or "",
        "job_arn": job.job_arn,
        "metrics": metrics,
    }
    return Completion(
        event=ModelTrained(
            model_version=version,
            family=ctx["family"],
            job_name=record.name,
            dataset_version=ctx["dataset_version"],
            tokenizer_version=ctx.get("tokenizer_version", ""),
            export_uri=job.custom_model_arn,
            metrics=metrics,
            request_id=ctx.get("request_id") or None,
        ),
        writes=[Put(MODELS_PK, version, item)],
    )


def stop(p: Platform, record: JobRecord) -> None:
    """Ask Bedrock to stop the job (a cancelled or superseded pipeline run); the state-change event
    that follows settles the record."""
    p.customizer.stop(record.name)


def _run_cancelled(p: Platform, request_id: str | None) -> bool:
    """Whether the request is a pipeline run that was cancelled or superseded (docs/pipelines.md)."""
    from docllm.service_layer.pipelines import run_cancelled

    return run_cancelled(p, request_id)


def _fail(p: Platform, record: JobRecord, reason: str) -> dict[str, str]:
    record.status, record.failure_reason, record.updated_at = "Failed", reason[:2000], utcnow()
    failed = StageFailed(
        stage=STAGE, subject=record.name, reason=reason[:2000], request_id=record.context.get("request_id") or None
    )
    commit(p, [Put(JOBS_PK, record.name, record.model_dump(mode="json"))], [failed])
    p.metrics.put("JobsFailed", 1, dimensions={"stage": STAGE})
    return {"job": record.name, "outcome": "failed", "reason": reason[:2000]}


# --------------------------------------------------------------------------- evaluation, deployment


def evaluate_custom_model(
    p: Platform, model_version: str, model: dict[str, Any], *, evaluation_id: str, benchmarks: list[str]
) -> dict[str, Any]:
    """Write the evaluation report of a custom model and return its ``evaluations`` record.

    What is stated is Bedrock's own measurement (:mod:`docllm.customize.evaluation`): the losses
    ``GetModelCustomizationJob`` gave when the job completed (the model record's ``final_*_loss``)
    and the metrics files Bedrock wrote under the job's output prefix. The report names what it
    cannot state and why. Called by the evaluate stage, which publishes "Evaluation Completed"."""
    from docllm.customize.evaluation import (
        TRAINING_FILE,
        TRAINING_LOSS_COLUMN,
        VALIDATION_FILE,
        VALIDATION_LOSS_COLUMN,
        BedrockEvaluationReport,
        headline_metrics,
        metrics_file,
        not_measured,
        render_html,
    )
    from docllm.service_layer.evaluate import champion_comparison

    job_name_ = str(model.get("job") or "")
    item = p.state.get(JOBS_PK, job_name_) if job_name_ else None
    record = JobRecord.model_validate(item) if item else None
    notes: list[str] = []
    found: dict[str, tuple[str, bytes]] = {}
    if record is None:
        notes.append(f"no customization job record {job_name_!r}: Bedrock's metrics files were not read")
    else:
        found, more = _metrics_files(p, record.output_uri, str(model.get("job_arn") or ""))
        notes += more
    files = {
        name: metrics_file(name, uri, hashlib.sha256(body).hexdigest(), body, column)
        for name, column in ((TRAINING_FILE, TRAINING_LOSS_COLUMN), (VALIDATION_FILE, VALIDATION_LOSS_COLUMN))
        if name in found
        for uri, body in [found[name]]
    }
    recorded = model.get("metrics") or {}
    api = {
        "training_loss": _float(recorded.get("final_train_loss")),
        "validation_loss": _float(recorded.get("final_val_loss")),
    }
    training, validation = files.get(TRAINING_FILE), files.get(VALIDATION_FILE)
    metrics, sources, more = headline_metrics(
        training_loss=api["training_loss"],
        validation_loss=api["validation_loss"],
        training=training.points if training else [],
        validation=validation.points if validation else [],
    )
    notes += more + [f"{f.name}: {f.problem}" for f in files.values() if f.problem]
    validation_records = _int(model.get("validation_records"))
    if validation_records == 0:
        notes.append("the job had no validation.jsonl (too few documents to hold some out): no validation loss")
    if benchmarks:
        notes.append(f"benchmarks asked for ({', '.join(benchmarks)}) were not run: see not_measured")
    report = BedrockEvaluationReport(
        evaluation_id=evaluation_id,
        model_version=model_version,
        family=str(model["family"]),
        dataset_version=model.get("dataset_version") or None,
        custom_model_arn=model.get("custom_model_arn") or model.get("export_uri"),
        customization_job=job_name_,
        customization_job_arn=model.get("job_arn") or None,
        base_model=model.get("base_model") or model.get("base_model_arn") or None,
        customization_type=model.get("customization_type") or None,
        validation_records=validation_records,
        metrics=metrics,
        sources=sources,
        api=api,
        training=training,
        validation=validation,
        notes=notes,
        not_measured=not_measured(benchmarks),
        champion=champion_comparison(p, str(model["family"])),
        created_at=utcnow(),
    )
    bucket = p.settings.artifact_bucket
    prefix = f"evaluations/{evaluation_id}/"
    body = report.model_dump_json(indent=1).encode()
    p.objects.put(bucket, prefix + "report.json", body, content_type="application/json")
    p.objects.put(bucket, prefix + "report.html", render_html(report).encode(), content_type="text/html")
    return {
        "evaluation_id": evaluation_id,
        "model_version": model_version,
        "family": report.family,
        "job": None,  # no evaluation job: the report was made here, from Bedrock's figures
        "method": METHOD,
        "report_uri": f"s3://{bucket}/{prefix}report.json",
        "report_sha256": hashlib.sha256(body).hexdigest(),
        "html_uri": f"s3://{bucket}/{prefix}report.html",
        "metrics": metrics,
        "benchmarks": {},
        "elapsed_s": None,
        "provenance": provenance(),
        "completed_at": utcnow(),
    }


def _metrics_files(p: Platform, output_uri: str, job_arn: str) -> tuple[dict[str, tuple[str, bytes]], list[str]]:
    """Bedrock's metrics files under the job's output prefix: file name -> (uri, bytes), and notes.

    Bedrock writes them under ``model-customization-job-<job id>/``; a file of that name elsewhere
    under the prefix is taken only when the job's own is not there (one job per prefix here)."""
    from docllm.customize.evaluation import TRAINING_FILE, VALIDATION_FILE

    bucket, prefix = split_uri(output_uri if output_uri.endswith("/") else output_uri + "/")
    job_id = job_arn.rsplit("/", 1)[-1] if job_arn else ""
    keys = [info.key for info in retry_transient(lambda: list(p.objects.list(bucket, prefix)))]
    out: dict[str, tuple[str, bytes]] = {}
    notes: list[str] = []
    for name in (TRAINING_FILE, VALIDATION_FILE):
        matching = sorted(k for k in keys if k.rsplit("/", 1)[-1] == name)
        if not matching:
            notes.append(f"no {name} under {output_uri}")
            continue
        own = [k for k in matching if job_id and f"model-customization-job-{job_id}/" in k]
        key = (own or matching)[-1]
        if len(matching) > 1:
            notes.append(f"{len(matching)} files named {name} under {output_uri}: read {key}")
        out[name] = (f"s3://{bucket}/{key}", retry_transient(p.objects.get, bucket, key))
    return out, notes


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def deploy_refusal(model: dict[str, Any]) -> str | None:
    """Why the deploy stage cannot serve this model (None: not a Bedrock custom model).

    A custom model is served by Bedrock only, through Provisioned Throughput
    (``CreateProvisionedModelThroughput``) or an on-demand custom model deployment, both bought
    for it; the deploy targets (local engine, SageMaker) load Hugging Face weights, which Bedrock
    never releases, and no deploy target of ours buys Bedrock capacity."""
    if model.get("method") != METHOD:
        return None
    return (
        f"model {model.get('version') or model.get('custom_model_arn')} is an Amazon Bedrock custom model "
        f"({model.get('custom_model_arn') or model.get('export_uri')}): its weights stay in Bedrock, so neither "
        "the local engine nor SageMaker can serve it; serve it in Bedrock with Provisioned Throughput or an "
        "on-demand custom model deployment (docs/customization.md, 'Deployment')"
    )


__all__ = [
    "METHOD",
    "STAGE",
    "complete_job",
    "deploy_refusal",
    "evaluate_custom_model",
    "handle_customization_event",
    "launch",
    "settle",
    "stop",
]
