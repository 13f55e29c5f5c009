"""What the platform can honestly say about an Amazon Bedrock custom model: Bedrock's own metrics.

A custom model's weights stay in Bedrock (AWS-managed storage, never released), and invoking it
needs Provisioned Throughput (or an on-demand custom model deployment) bought for it, so the
evaluation job (held-out perplexity on our test split, the Q&A set, hallucination) cannot run on it.
What exists is what Bedrock measured while training, from two sources:

``GetModelCustomizationJob``
    ``trainingMetrics.trainingLoss`` and ``validationMetrics[].validationLoss`` (one entry per
    validator; the platform gives one), the values the customize stage recorded as
    ``final_train_loss`` / ``final_val_loss`` of the model record.
The job's output prefix (Bedrock's "Analyze the results of a model customization job")
    ``<output>/model-customization-job-<job id>/training_artifacts/step_wise_training_metrics.csv``
    with columns ``step_number``, ``epoch_number``, ``training_loss``, ``perplexity``; and, when a
    validation set was given, ``.../validation_artifacts/post_fine_tuning_validation/validation_metrics.csv``
    with the same columns but ``validation_loss`` in place of ``training_loss``.

The headline metrics (named ``bedrock_*`` so that nobody compares them with a docllm model's
``heldout_loss``: they are in the base model's tokens, on this job's ``validation.jsonl``):

``bedrock_validation_loss``
    the API's validation loss, else the last row of ``validation_metrics.csv``;
``bedrock_training_loss``
    the API's training loss, else the last row of ``step_wise_training_metrics.csv``;
``bedrock_validation_perplexity`` / ``bedrock_training_perplexity``
    the ``perplexity`` column of those last rows.

A value that is absent or not finite is left out (the gate then fails a required rule on it,
rather than reading a made-up number); :data:`NOT_MEASURED` lists what the report cannot state and
why. Pure: bytes and values in, a report out; the service layer reads and writes the objects.

>>> rows = parse_metrics_csv(b"step_number,epoch_number,training_loss,perplexity\\n0,0,2.5,12.2\\n9,1,1.25,3.49\\n",
...     "training_loss")
>>> [(r.step, r.loss) for r in rows]
[(0, 2.5), (9, 1.25)]
>>> metrics, sources, notes = headline_metrics(training_loss=None, validation_loss=1.5, training=rows, validation=[])
>>> metrics
{'bedrock_training_loss': 1.25, 'bedrock_training_perplexity': 3.49, 'bedrock_validation_loss': 1.5}
>>> sources["bedrock_training_loss"], sources["bedrock_validation_loss"]
('step_wise_training_metrics.csv, last row (step 9)', 'GetModelCustomizationJob validation loss')
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

TRAINING_FILE = "step_wise_training_metrics.csv"
VALIDATION_FILE = "validation_metrics.csv"
TRAINING_LOSS_COLUMN = "training_loss"
VALIDATION_LOSS_COLUMN = "validation_loss"
#: Points kept per curve in the report (evenly sampled, the last one always kept): a long job's
#: step-wise file has one row a step, and the report travels in the registry and the manifest.
MAX_POINTS = 500
#: Relative difference above which the API's value and the file's last row are reported as differing.
AGREEMENT_TOLERANCE = 1e-6

#: Metrics of a docllm evaluation that a Bedrock custom model does not get, and why (the report's
#: ``not_measured``). The reason is the same for each: no weights, and no inference without a
#: throughput purchase; docs/customization.md, "Evaluation and the gate", says what AWS allows.
_NO_INFERENCE = (
    "needs the model's outputs: Amazon Bedrock never releases a custom model's weights, and invoking "
    "one needs Provisioned Throughput (or an on-demand custom model deployment) bought for it, which "
    "the platform does not buy; only a run on real AWS with that purchase can measure it "
    "(docs/customization.md, 'Evaluation and the gate')"
)
NOT_MEASURED: dict[str, str] = {
    "heldout_loss": (
        "held-out loss and perplexity on the dataset's test split "
        f"{_NO_INFERENCE}; bedrock_validation_loss is Bedrock's loss on this job's validation.jsonl instead"
    ),
    "qa_token_f1": f"Q&A answers scored against the evaluation set {_NO_INFERENCE}",
    "hallucination_rate": f"grounding of the Q&A answers in their sources {_NO_INFERENCE}",
}


class MetricsFileError(ValueError):
    """A Bedrock metrics file is not the CSV Bedrock documents (missing columns, no number)."""


class MetricPoint(BaseModel):
    """One row of a Bedrock metrics file."""

    step: int
    epoch: float | None = None
    loss: float | None = Field(default=None, description="None: not a finite number in the file")
    perplexity: float | None = None


class MetricsFile(BaseModel):
    """One of Bedrock's metrics files as read: where, its digest, and its curve."""

    name: str = Field(description="the file name (step_wise_training_metrics.csv, validation_metrics.csv)")
    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: int = Field(ge=0, description="data rows in the file")
    non_finite: int = Field(default=0, description="rows whose loss was not a finite number")
    last: MetricPoint | None = Field(default=None, description="the row of the highest step")
    points: list[MetricPoint] = Field(default_factory=list, description="the curve, at most MAX_POINTS")
    problem: str | None = Field(default=None, description="why the file could not be read (then no points)")


class NotMeasured(BaseModel):
    metric: str
    reason: str


class BedrockEvaluationReport(BaseModel):
    """``report.json`` of a Bedrock custom model's evaluation (what the registry and manifest point at)."""

    kind: Literal["bedrock-customization"] = "bedrock-customization"
    evaluation_id: str
    model_version: str
    family: str
    dataset_version: str | None = None
    custom_model_arn: str | None = None
    customization_job: str
    customization_job_arn: str | None = None
    base_model: str | None = None
    customization_type: str | None = None
    validation_records: int | None = Field(default=None, description="records of validation.jsonl (data.json)")
    metrics: dict[str, float] = Field(description="the headline metrics the gate reads, all Bedrock's")
    sources: dict[str, str] = Field(default_factory=dict, description="metric -> where its value came from")
    api: dict[str, float | None] = Field(
        default_factory=dict, description="GetModelCustomizationJob's trainingLoss and validationLoss"
    )
    training: MetricsFile | None = None
    validation: MetricsFile | None = None
    notes: list[str] = Field(default_factory=list)
    not_measured: list[NotMeasured] = Field(default_factory=list)
    champion: dict[str, Any] | None = Field(default=None, description="the family's champion and its metrics")
    created_at: str


def _number(raw: str | None) -> float | None:
    """A finite float, else None (blank, text, NaN, infinity)."""
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_metrics_csv(body: bytes, loss_column: str) -> list[MetricPoint]:
    """The rows of a Bedrock metrics file, in step order.

    Raises
    ------
    MetricsFileError
        No ``step_number`` or ``loss_column`` column, or no row with a step number.
    """
    text = body.decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip() for c in reader.fieldnames or []}
    missing = {"step_number", loss_column} - columns
    if missing:
        raise MetricsFileError(f"columns {sorted(missing)} missing (found {sorted(columns)})")
    points = []
    for row in reader:
        clean = {(k or "").strip(): v for k, v in row.items()}
        step = _number(clean.get("step_number"))
        if step is None:
            continue
        points.append(
            MetricPoint(
                step=int(step),
                epoch=_number(clean.get("epoch_number")),
                loss=_number(clean.get(loss_column)),
                perplexity=_number(clean.get("perplexity")),
            )
        )
    if not points:
        raise MetricsFileError("no row with a step number")
    return sorted(points, key=lambda p: p.step)


def sampled(points: Sequence[MetricPoint], limit: int = MAX_POINTS) -> list[MetricPoint]:
    """At most ``limit`` points, evenly spaced, the first and last kept.

    >>> [p.step for p in sampled([MetricPoint(step=i) for i in range(10)], 4)]
    [0, 3, 6, 9]
    """
    if len(points) <= limit:
        return list(points)
    stride = (len(points) - 1) / (limit - 1)
    return [points[round(i * stride)] for i in range(limit)]


def metrics_file(name: str, uri: str, sha256: str, body: bytes, loss_column: str) -> MetricsFile:
    """A metrics file read into its curve; a file that is not Bedrock's CSV keeps the reason instead."""
    try:
        points = parse_metrics_csv(body, loss_column)
    except MetricsFileError as e:
        return MetricsFile(name=name, uri=uri, sha256=sha256, rows=0, problem=str(e))
    return MetricsFile(
        name=name,
        uri=uri,
        sha256=sha256,
        rows=len(points),
        non_finite=sum(1 for p in points if p.loss is None),
        last=points[-1],
        points=sampled(points),
    )


def headline_metrics(
    *,
    training_loss: float | None,
    validation_loss: float | None,
    training: Sequence[MetricPoint],
    validation: Sequence[MetricPoint],
) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """``(metrics, sources, notes)`` from the API's losses and the files' rows (module docstring)."""
    metrics: dict[str, float] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    for kind, api, rows, file_name in (
        ("training", training_loss, training, TRAINING_FILE),
        ("validation", validation_loss, validation, VALIDATION_FILE),
    ):
        name = f"bedrock_{kind}_loss"
        last = rows[-1] if rows else None
        api_value = api if api is not None and math.isfinite(api) else None
        if api is not None and api_value is None:
            notes.append(f"GetModelCustomizationJob's {kind} loss is not a finite number ({api}): not used")
        if api_value is not None:
            metrics[name], sources[name] = api_value, f"GetModelCustomizationJob {kind} loss"
            if last is not None and last.loss is not None and not _close(api_value, last.loss):
                notes.append(
                    f"{file_name}'s last row (step {last.step}) says {kind} loss {last.loss:g}, the API "
                    f"{api_value:g}: the API's value is the metric"
                )
        elif last is not None and last.loss is not None:
            metrics[name], sources[name] = last.loss, f"{file_name}, last row (step {last.step})"
        else:
            notes.append(f"no {kind} loss: neither GetModelCustomizationJob nor {file_name} gives a finite one")
        if last is not None and last.perplexity is not None:
            metrics[f"bedrock_{kind}_perplexity"] = last.perplexity
            sources[f"bedrock_{kind}_perplexity"] = f"{file_name}, last row (step {last.step})"
    return dict(sorted(metrics.items())), sources, notes


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= AGREEMENT_TOLERANCE * max(1.0, abs(a), abs(b))


def not_measured(benchmarks: Sequence[str] = ()) -> list[NotMeasured]:
    """What the report cannot state (:data:`NOT_MEASURED`), plus each benchmark that was asked for."""
    out = [NotMeasured(metric=m, reason=r) for m, r in NOT_MEASURED.items()]
    out += [NotMeasured(metric=f"benchmark.{b}", reason=f"benchmark {b} {_NO_INFERENCE}") for b in benchmarks]
    return out


def render_html(report: BedrockEvaluationReport) -> str:
    """A small self-contained page of the report (every value escaped)."""

    def e(value: Any) -> str:
        return html.escape("" if value is None else str(value))

    rows = "".join(
        f"<tr><td>{e(k)}</td><td>{v:.6g}</td><td>{e(report.sources.get(k))}</td></tr>"
        for k, v in report.metrics.items()
    )
    missing = "".join(f"<li><b>{e(n.metric)}</b>: {e(n.reason)}</li>" for n in report.not_measured)
    notes = "".join(f"<li>{e(n)}</li>" for n in report.notes)
    files = "".join(
        f"<li>{e(f.name)}: {f.rows} rows, sha256 {e(f.sha256)}{' - ' + e(f.problem) if f.problem else ''}</li>"
        for f in (report.training, report.validation)
        if f is not None
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>docllm evaluation {e(report.model_version)}</title></head><body>"
        f"<h1>{e(report.model_version)} (Amazon Bedrock custom model)</h1>"
        f"<p>Family {e(report.family)}, custom model {e(report.custom_model_arn)}, base model "
        f"{e(report.base_model)}, customization job {e(report.customization_job)}, dataset "
        f"{e(report.dataset_version)}.</p>"
        "<h2>Bedrock's metrics</h2><table><tr><th>metric</th><th>value</th><th>source</th></tr>"
        f"{rows}</table><p>In the base model's tokens, on this job's validation.jsonl: comparable between "
        "models of the same base model and dataset version only.</p>"
        f"<h2>Files</h2><ul>{files or '<li>none found under the job output prefix</li>'}</ul>"
        f"<h2>Notes</h2><ul>{notes or '<li>none</li>'}</ul>"
        f"<h2>Not measured</h2><ul>{missing}</ul></body></html>"
    )


__all__ = [
    "NOT_MEASURED",
    "TRAINING_FILE",
    "VALIDATION_FILE",
    "BedrockEvaluationReport",
    "MetricPoint",
    "MetricsFile",
    "MetricsFileError",
    "NotMeasured",
    "headline_metrics",
    "metrics_file",
    "not_measured",
    "parse_metrics_csv",
    "render_html",
    "sampled",
]
