"""The evaluation report: what one evaluation of one model version measured (light: pydantic only).

The evaluation job writes it as ``report.json`` (and ``report.html``, see
:mod:`docllm.evaluation.html`) under ``evaluations/<evaluation_id>/``; the gate
reads the flat :attr:`EvaluationReport.metrics`, whose names are stable and whose
direction (is higher better?) :func:`higher_is_better` answers.

Non-finite numbers (a diverged model's ``inf`` perplexity, a ``nan`` loss) cannot
be written as JSON and must not compare as numbers, so every optional measure
turns them into ``None`` ("not measurable"), and metric dictionaries drop them:
a gate then sees the metric as missing and must fail the rule that needs it.

Example
-------
>>> heldout = HeldOut(documents=2, tokens=100, loss=2.0, perplexity=float("inf"), next_token_accuracy=0.4)
>>> heldout.perplexity is None
True
>>> higher_is_better("perplexity"), higher_is_better("benchmark.faq.exact_match")
(False, True)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from docllm.exceptions import PermanentError

SCHEMA_VERSION: Literal[1] = 1


class InvalidReportError(PermanentError):
    """A stored report is not valid JSON or does not match :class:`EvaluationReport`."""


class UnknownMetricError(PermanentError):
    """A metric name whose direction (higher or lower is better) is not known."""


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite_entries(value: Any) -> Any:
    # None or non-finite means "not measured": absent, rather than a number that lies.
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if v is not None and not (isinstance(v, float) and not math.isfinite(v))}
    return value


Measure = Annotated[float | None, BeforeValidator(_finite_or_none)]
"""A number that may be unmeasurable: ``None`` for no data and for non-finite values."""

Metrics = Annotated[dict[str, float], BeforeValidator(_finite_entries)]
"""Named finite numbers; unmeasurable entries are dropped."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class HeldOut(_Model):
    """Language-modelling quality on a split the model never trained on."""

    split: Literal["test", "validation"] = "test"
    """The test split; a dataset too small to have one is measured on its validation split instead."""
    documents: int = Field(ge=0)
    """Documents of the split that were scored."""
    tokens: int = Field(ge=0)
    """Predicted tokens (targets) scored."""
    loss: Measure = None
    """Mean cross-entropy in nats per token (lower is better)."""
    perplexity: Measure = None
    """``exp(loss)`` (lower is better)."""
    next_token_accuracy: Measure = None
    """Share of targets that are the model's most likely next token (higher is better)."""


class RuleScore(_Model):
    """Q&A scores of the prompts that one rule built."""

    items: int = Field(ge=0)
    exact_match: Measure = None
    token_f1: Measure = None


class QAExample(_Model):
    """One Q&A prompt with the model's answer, kept for people to read."""

    rule: str
    prompt: str
    answer: str
    """The expected answer, taken from the held-out document."""
    prediction: str
    """What the model generated."""
    exact_match: bool
    token_f1: float = Field(ge=0, le=1)


class QAResult(_Model):
    """Q&A accuracy on prompts built from held-out documents by deterministic rules."""

    items: int = Field(ge=0)
    exact_match: Measure = None
    """Share of answers equal to the expected one after normalisation (higher is better)."""
    token_f1: Measure = None
    """Mean token-overlap F1 with the expected answer (higher is better)."""
    by_rule: dict[str, RuleScore] = Field(default_factory=dict)
    examples: list[QAExample] = Field(default_factory=list)


class KindCount(_Model):
    """Factual tokens of one kind (service name, ARN, number, …) and how many were unsupported."""

    total: int = Field(ge=0)
    unsupported: int = Field(ge=0)


class HallucinationSummary(_Model):
    """Generated factual tokens not supported by the source section or the retrieved context."""

    factual_tokens: int = Field(ge=0)
    unsupported: int = Field(ge=0)
    rate: Measure = None
    """``unsupported / factual_tokens``; ``None`` when nothing factual was generated (lower is better)."""
    by_kind: dict[str, KindCount] = Field(default_factory=dict)
    domain_vocab_score: Measure = None
    """How much of the generated text uses the corpus's own vocabulary (higher is better)."""
    examples: list[str] = Field(default_factory=list)
    """A few unsupported tokens in context, for people to read."""


class BenchmarkResult(_Model):
    """One custom benchmark (uploaded under ``benchmarks/``) run against the candidate."""

    name: str
    source_key: str
    """Where the benchmark came from (the bucket key of its file)."""
    kind: str
    """Its shape, e.g. ``jsonl`` or an lm-evaluation-harness output type."""
    items: int = Field(ge=0)
    metrics: Metrics = Field(default_factory=dict)
    error: str | None = None
    """Why the benchmark could not run; its metrics are then empty and not headline metrics."""
    examples: list[dict[str, str]] = Field(default_factory=list)


class TrainingPoint(_Model):
    """One point of the training history; a point may carry a training loss, a validation loss or both."""

    step: int = Field(ge=0)
    tokens: int = Field(ge=0)
    train_loss: Measure = None
    val_loss: Measure = None
    lr: Measure = None


class TrainingSummary(_Model):
    """The training run's loss history and final numbers, copied from the training job's records."""

    history: list[TrainingPoint] = Field(default_factory=list)
    metrics: Metrics = Field(default_factory=dict)

    @classmethod
    def from_log_records(
        cls, records: Iterable[Mapping[str, Any]], metrics: Mapping[str, float] | None = None
    ) -> TrainingSummary:
        """Merge the training loop's log records (``kind`` train/val, ``loss``, ``step``, ``tokens_seen``, ``lr``).

        Records of the same step become one point, so a validation loss logged at
        step 100 sits beside the training loss of step 100.

        Example
        -------
        >>> rows = [{"step": 1, "kind": "train", "loss": 3.0, "lr": 1e-3, "tokens_seen": 64},
        ...         {"step": 1, "kind": "val", "loss": 3.2, "lr": 1e-3, "tokens_seen": 64}]
        >>> TrainingSummary.from_log_records(rows).history[0].val_loss
        3.2
        """
        points: dict[int, dict[str, Any]] = {}
        for rec in records:
            step = int(rec["step"])
            point = points.setdefault(step, {"step": step, "tokens": int(rec.get("tokens_seen", 0))})
            point["tokens"] = max(point["tokens"], int(rec.get("tokens_seen", 0)))
            point["val_loss" if rec.get("kind") == "val" else "train_loss"] = rec.get("loss")
            if rec.get("lr") is not None:
                point["lr"] = rec["lr"]
        history = [TrainingPoint.model_validate(points[s]) for s in sorted(points)]
        return cls(history=history, metrics=dict(metrics or {}))


class ChampionComparison(_Model):
    """The family's champion at evaluation time, and its headline metrics."""

    model_version: str
    metrics: Metrics = Field(default_factory=dict)


HIGHER_IS_BETTER: dict[str, bool] = {
    "perplexity": False,
    "heldout_loss": False,
    "next_token_accuracy": True,
    "qa_exact_match": True,
    "qa_token_f1": True,
    "hallucination_rate": False,
    "domain_vocab_score": True,
}
"""Every headline metric's direction; for ``benchmark.<name>.<metric>`` see :func:`higher_is_better`."""

BENCHMARK_PREFIX = "benchmark."

# Benchmark metric names: scores and log-likelihoods rise with quality, errors fall.
_HIGHER_BENCHMARK = ("loglikelihood", "acc", "exact_match", "token_f1", "f1", "contains", "accuracy")
_LOWER_MARKERS = ("perplexity", "loss", "hallucination", "error")


def higher_is_better(metric_name: str) -> bool:
    """Whether a larger value of ``metric_name`` means a better model.

    Headline names come from :data:`HIGHER_IS_BETTER`. For ``benchmark.<name>.<metric>``
    (the benchmark's name may itself contain dots) the metric is the last part:
    anything naming perplexity, loss, hallucination or error is lower-is-better;
    log-likelihood, accuracy (``acc``, ``acc_norm``…), exact match, F1 and contains are
    higher-is-better.

    Raises
    ------
    UnknownMetricError
        For a name of neither shape, so that no gate guesses a direction.

    Example
    -------
    >>> higher_is_better("benchmark.cli.v2.acc_norm"), higher_is_better("benchmark.x.word_perplexity")
    (True, False)
    """
    if metric_name in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric_name]
    if metric_name.startswith(BENCHMARK_PREFIX) and "." in metric_name[len(BENCHMARK_PREFIX) :]:
        metric = metric_name.rsplit(".", 1)[1].lower()
        if any(marker in metric for marker in _LOWER_MARKERS):
            return False
        if any(metric == name or metric.startswith(name + "_") for name in _HIGHER_BENCHMARK):
            return True
    raise UnknownMetricError(
        f"unknown metric {metric_name!r}: its direction (higher or lower is better) is not defined"
    )


def headline_metrics(report: EvaluationReport) -> dict[str, float]:
    """Flatten the numbers the gate reads into stable names; unmeasurable ones are left out.

    Names: the keys of :data:`HIGHER_IS_BETTER`, then ``benchmark.<name>.<metric>`` for
    every benchmark that ran (one that failed contributes nothing).

    Example
    -------
    >>> from datetime import datetime, UTC
    >>> report = EvaluationReport(evaluation_id="e", model_version="m", family="f",
    ...     created_at=datetime(2025, 1, 1, tzinfo=UTC), elapsed_s=1.0,
    ...     heldout=HeldOut(documents=1, tokens=9, loss=1.0, perplexity=2.72),
    ...     qa=QAResult(items=0), hallucination=HallucinationSummary(factual_tokens=0, unsupported=0),
    ...     benchmarks=[BenchmarkResult(name="faq", source_key="benchmarks/faq.jsonl", kind="jsonl", items=3,
    ...                                 metrics={"exact_match": 0.5})])
    >>> sorted(headline_metrics(report))
    ['benchmark.faq.exact_match', 'heldout_loss', 'perplexity']
    """
    values: dict[str, float | None] = {
        "perplexity": report.heldout.perplexity,
        "heldout_loss": report.heldout.loss,
        "next_token_accuracy": report.heldout.next_token_accuracy,
        "qa_exact_match": report.qa.exact_match,
        "qa_token_f1": report.qa.token_f1,
        "hallucination_rate": report.hallucination.rate,
        "domain_vocab_score": report.hallucination.domain_vocab_score,
    }
    for bench in report.benchmarks:
        if bench.error is None:
            for metric, value in bench.metrics.items():
                values[f"{BENCHMARK_PREFIX}{bench.name}.{metric}"] = value
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}


class EvaluationReport(_Model):
    """Everything one evaluation measured about one model version."""

    schema_version: Literal[1] = SCHEMA_VERSION
    evaluation_id: str
    model_version: str
    family: str
    dataset_version: str | None = None
    tokenizer_version: str | None = None
    created_at: datetime
    elapsed_s: float = Field(ge=0)
    heldout: HeldOut
    qa: QAResult
    hallucination: HallucinationSummary
    benchmarks: list[BenchmarkResult] = Field(default_factory=list)
    training: TrainingSummary | None = None
    """The training history, when the training job left one."""
    champion: ChampionComparison | None = None
    """The champion at evaluation time; ``None`` for a family's first model."""
    metrics: Metrics = Field(default_factory=dict)
    """Headline metrics by stable name (see :func:`headline_metrics`, :func:`higher_is_better`)."""

    @classmethod
    def assemble(cls, **fields: Any) -> EvaluationReport:
        """Build a report whose :attr:`metrics` are computed from its parts (pass no ``metrics``)."""
        if "metrics" in fields:
            raise TypeError("assemble computes metrics itself; build EvaluationReport(...) to pass them")
        report = cls.model_validate(fields)
        report.metrics = headline_metrics(report)
        return report


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def to_json(report: EvaluationReport) -> bytes:
    """Canonical UTF-8 JSON (sorted keys, no whitespace, no NaN): equal reports give equal bytes, so the hash is stable.

    Example
    -------
    >>> import hashlib
    >>> hashlib.sha256(to_json(report)).hexdigest()  # doctest: +SKIP
    """
    data = _json_safe(report.model_dump(mode="json"))
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def from_json(data: bytes | str) -> EvaluationReport:
    """Parse ``report.json``; raises :class:`InvalidReportError` naming what is wrong."""
    try:
        return EvaluationReport.model_validate_json(data)
    except PydanticValidationError as e:
        raise InvalidReportError(f"invalid evaluation report: {e}") from e
