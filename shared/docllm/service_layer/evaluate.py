"""Evaluate stage: "Model Trained" / "Evaluation Requested" → an evaluation job → "Evaluation Completed".

The job (``docllm.jobs.evaluate_job``) runs like training, on the family's instance type, with the
model's training output, its dataset version and the custom benchmarks as channels. Its report
(``report.json`` + ``report.html``) stays under ``evaluations/<evaluation id>/`` in the artifact
bucket; what the gate needs travels in the event.
"""

from __future__ import annotations

import json
from typing import Any

from docllm.bootstrap import Platform
from docllm.events.contracts import EvaluationCompleted, EvaluationRequested, ModelTrained, parse_detail
from docllm.events.envelope import BusEvent
from docllm.exceptions import NotFoundError, PermanentError
from docllm.ports.jobs import JobSpec
from docllm.ports.state import Put
from docllm.records import JOBS_PK, JobRecord, utcnow
from docllm.service_layer.jobs import MODELS_PK, Completion, digest, job_name, launch, read_result

STAGE = "evaluate"
EVALUATIONS_PK = "evaluations"
BENCHMARKS_PREFIX = "benchmarks/"
#: Wall-clock limit of an evaluation job; a tiny model needs well under a minute.
MAX_RUNTIME_S = 4 * 3600


class UnknownModelError(PermanentError):
    """An evaluation was asked for a model version the platform never trained."""


def handle_evaluate_event(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    event = BusEvent.model_validate(raw)
    if event.detail_type == ModelTrained.DETAIL_TYPE:
        trained = parse_detail(event, ModelTrained)
        return _launch(p, trained.model_version, trained.request_id or "", benchmarks=[])
    request = parse_detail(event, EvaluationRequested)
    return _launch(p, request.model_version, request.request_id, benchmarks=request.benchmarks)


def model_record(p: Platform, model_version: str) -> dict[str, Any]:
    item = p.state.get(MODELS_PK, model_version)
    if item is None:
        raise UnknownModelError(f"no trained model {model_version!r}: see docllm models")
    return item


def champion_comparison(p: Platform, family: str) -> dict[str, Any] | None:
    """The family's champion and its latest evaluation's metrics, for the report's comparison."""
    try:
        champion = p.registry.aliases(family).get("champion")
    except NotFoundError:
        return None
    if not champion:
        return None
    latest = latest_evaluation(p, champion)
    return {"model_version": champion, "metrics": latest["metrics"] if latest else {}}


def latest_evaluation(p: Platform, model_version: str) -> dict[str, Any] | None:
    found = [item for _, item in p.state.query(EVALUATIONS_PK) if item.get("model_version") == model_version]
    return max(found, key=lambda i: i.get("completed_at", "")) if found else None


def _launch(p: Platform, model_version: str, request_id: str, *, benchmarks: list[str]) -> dict[str, Any]:
    from docllm.training.families import family as family_named

    model = model_record(p, model_version)
    if model.get("method") == "bedrock-customization":
        return _evaluate_bedrock_custom_model(p, model_version, request_id, model, benchmarks)
    family = family_named(model["family"])
    train_job = p.state.get(JOBS_PK, str(model.get("job") or "")) if model.get("job") else None
    if train_job is None:
        raise UnknownModelError(f"model {model_version!r} has no training job record")
    model_uri = JobRecord.model_validate(train_job).output_uri
    bucket = p.settings.artifact_bucket
    name = job_name(STAGE, digest(model_version, request_id, *benchmarks), p)
    output = f"s3://{bucket}/evaluations/{name}/"
    channels = {"model": model_uri, "dataset": f"s3://{bucket}/datasets/{model['dataset_version']}/"}
    raw = p.settings.raw_bucket
    # SageMaker refuses a channel whose prefix holds no object: add it only when there is a benchmark.
    if next(iter(p.objects.list(raw, BENCHMARKS_PREFIX)), None) is not None:
        channels["benchmarks"] = f"s3://{raw}/{BENCHMARKS_PREFIX}"
    champion = champion_comparison(p, family.name)
    spec = JobSpec(
        name=name,
        image="evaluate",
        entry_point="docllm.jobs.evaluate_job",
        hyperparameters={
            "evaluation_id": name,
            "model_version": model_version,
            "family": family.name,
            "dataset_version": model["dataset_version"],
            "tokenizer_version": model["tokenizer_version"],
            "output_uri": output,
            "champion": json.dumps(champion) if champion else "",
            "benchmarks": json.dumps(benchmarks),
        },
        channels=channels,
        output_uri=f"{output}sagemaker/",
        instance_type=family.instance_type,
        max_runtime_s=MAX_RUNTIME_S,
        tags={"docllm:stage": STAGE, "docllm:model-version": model_version[:256]},
    )
    outcome = launch(
        p,
        spec,
        STAGE,
        {"model_version": model_version, "family": family.name, "request_id": request_id},
    )
    return {"job": name, "outcome": outcome}


def _evaluate_bedrock_custom_model(
    p: Platform, model_version: str, request_id: str, model: dict[str, Any], benchmarks: list[str]
) -> dict[str, Any]:
    """An Amazon Bedrock custom model (service_layer/customize.py) is evaluated from Bedrock's own
    metrics, not by the evaluation job: that job loads Hugging Face weights, which Bedrock never
    releases, and invoking a custom model needs Provisioned Throughput bought for it. The report
    (``customize.evaluate_custom_model``) states Bedrock's training and validation losses as
    ``bedrock_*`` metrics and names what could not be measured and why; "Evaluation Completed"
    then takes the model to the gate like any other (docs/customization.md, 'Evaluation and the gate').

    The evaluation id is deterministic per (model, request, benchmarks), as a job name is: a
    redelivery after the commit finds the record and publishes nothing twice."""
    from docllm.service_layer import customize
    from docllm.service_layer.outbox import commit

    name = job_name(STAGE, digest(model_version, request_id, *benchmarks), p)
    if p.state.get(EVALUATIONS_PK, name) is not None:
        return {"evaluation": name, "outcome": "already evaluated", "method": customize.METHOD}
    item = customize.evaluate_custom_model(p, model_version, model, evaluation_id=name, benchmarks=benchmarks)
    completed = EvaluationCompleted(
        model_version=model_version,
        family=item["family"],
        evaluation_id=name,
        report_uri=item["report_uri"],
        report_sha256=item["report_sha256"],
        html_uri=item["html_uri"],
        metrics=item["metrics"],
        request_id=request_id or None,
    )
    commit(p, [Put(EVALUATIONS_PK, name, item)], [completed])
    return {"evaluation": name, "outcome": "evaluated from Bedrock's metrics", "metrics": item["metrics"]}


def complete_job(p: Platform, record: JobRecord) -> Completion:
    """The evaluation job finished: record the evaluation and announce it to the gate."""
    result = read_result(p, record.output_uri)
    if result.get("model_version") != record.context["model_version"]:
        raise PermanentError(
            f"the evaluation result names model {result.get('model_version')!r}, "
            f"the job was for {record.context['model_version']!r}"
        )
    base = record.output_uri.rstrip("/") + "/"
    item = {
        "evaluation_id": record.name,
        "model_version": record.context["model_version"],
        "family": record.context["family"],
        "job": record.name,
        "report_uri": base + result["report_path"],
        "report_sha256": result["report_sha256"],
        "html_uri": base + result["html_path"],
        "metrics": {k: float(v) for k, v in result["metrics"].items() if v is not None},
        "benchmarks": result.get("benchmarks", {}),
        "elapsed_s": result.get("elapsed_s"),
        "provenance": result.get("provenance", {}),
        "completed_at": utcnow(),
    }
    return Completion(
        event=EvaluationCompleted(
            model_version=item["model_version"],
            family=item["family"],
            evaluation_id=record.name,
            report_uri=item["report_uri"],
            report_sha256=item["report_sha256"],
            html_uri=item["html_uri"],
            metrics=item["metrics"],
            benchmarks=item["benchmarks"],
            request_id=record.context.get("request_id") or None,
        ),
        writes=[Put(EVALUATIONS_PK, record.name, item)],
    )
