"""Bedrock's metrics of a custom model: the documented CSVs read, the headline metrics chosen (the
API's value first, the file's last row otherwise), nothing made up, and what is not measured named."""

from __future__ import annotations

import doctest
import itertools
import math

import pytest

from docllm.customize import evaluation
from docllm.customize.evaluation import (
    NOT_MEASURED,
    BedrockEvaluationReport,
    MetricPoint,
    MetricsFileError,
    headline_metrics,
    metrics_file,
    not_measured,
    parse_metrics_csv,
    render_html,
    sampled,
)

TRAINING = b"step_number,epoch_number,training_loss,perplexity\n0,0,2.5,12.18\n1,0,2.0,7.39\n2,1,1.5,4.48\n"
VALIDATION = b"step_number,epoch_number,validation_loss,perplexity\n2,1,1.75,5.75\n"


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(evaluation).failed == 0


def test_reads_bedrocks_documented_columns_in_step_order() -> None:
    shuffled = b"step_number,epoch_number,training_loss,perplexity\n2,1,1.5,4.48\n0,0,2.5,12.18\n"
    points = parse_metrics_csv(shuffled, "training_loss")
    assert [(p.step, p.epoch, p.loss, p.perplexity) for p in points] == [(0, 0.0, 2.5, 12.18), (2, 1.0, 1.5, 4.48)]
    # A byte-order mark and padded header names are Excel's habits, not a different format.
    assert parse_metrics_csv(b"\xef\xbb\xbfstep_number , validation_loss\n3,0.5\n", "validation_loss")[0].loss == 0.5


def test_a_file_without_the_columns_or_rows_is_refused_with_the_reason() -> None:
    with pytest.raises(MetricsFileError, match=r"\['validation_loss'\] missing"):
        parse_metrics_csv(TRAINING, "validation_loss")
    with pytest.raises(MetricsFileError, match="no row"):
        parse_metrics_csv(b"step_number,training_loss\n,1.0\n", "training_loss")
    broken = metrics_file("validation_metrics.csv", "s3://b/k", "0" * 64, b"a,b\n1,2\n", "validation_loss")
    assert broken.problem is not None and broken.points == [] and broken.last is None


def test_non_finite_losses_are_counted_and_never_become_a_metric() -> None:
    body = b"step_number,epoch_number,training_loss,perplexity\n0,0,2.0,7.4\n1,0,nan,inf\n"
    read = metrics_file("step_wise_training_metrics.csv", "s3://b/k", "0" * 64, body, "training_loss")
    assert read.rows == 2 and read.non_finite == 1 and read.last == MetricPoint(step=1, epoch=0.0)
    metrics, _, notes = headline_metrics(
        training_loss=float("nan"), validation_loss=None, training=read.points, validation=[]
    )
    assert metrics == {}
    assert any("not a finite number" in n for n in notes)
    assert any("no training loss" in n for n in notes) and any("no validation loss" in n for n in notes)


def test_the_api_value_wins_and_a_disagreeing_file_is_noted() -> None:
    training = parse_metrics_csv(TRAINING, "training_loss")
    validation = parse_metrics_csv(VALIDATION, "validation_loss")
    metrics, sources, notes = headline_metrics(
        training_loss=1.5, validation_loss=1.7, training=training, validation=validation
    )
    assert metrics == {
        "bedrock_training_loss": 1.5,
        "bedrock_training_perplexity": 4.48,
        "bedrock_validation_loss": 1.7,
        "bedrock_validation_perplexity": 5.75,
    }
    assert sources["bedrock_validation_loss"] == "GetModelCustomizationJob validation loss"
    assert notes == [
        "validation_metrics.csv's last row (step 2) says validation loss 1.75, the API 1.7: "
        "the API's value is the metric"
    ]
    # Without the API's figures the files' last rows are the metrics, and say where they came from.
    metrics, sources, notes = headline_metrics(
        training_loss=None, validation_loss=None, training=training, validation=validation
    )
    assert (metrics["bedrock_training_loss"], metrics["bedrock_validation_loss"]) == (1.5, 1.75)
    assert sources["bedrock_validation_loss"] == "validation_metrics.csv, last row (step 2)" and notes == []


def test_a_long_curve_is_sampled_evenly_with_both_ends() -> None:
    points = [MetricPoint(step=i, loss=math.exp(-i / 1000)) for i in range(10_001)]
    kept = sampled(points, 500)
    assert len(kept) == 500 and kept[0].step == 0 and kept[-1].step == 10_000
    assert all(b.step > a.step for a, b in itertools.pairwise(kept))


def test_what_cannot_be_measured_is_named_with_the_reason() -> None:
    missing = not_measured(["cli-v2"])
    assert [n.metric for n in missing] == [*NOT_MEASURED, "benchmark.cli-v2"]
    assert all("Provisioned Throughput" in n.reason and "weights" in n.reason for n in missing)


def test_the_html_page_escapes_every_value() -> None:
    report = BedrockEvaluationReport(
        evaluation_id="e1",
        model_version="<script>alert(1)</script>",
        family="s3-bedrock",
        customization_job="j",
        metrics={"bedrock_validation_loss": 1.5},
        sources={"bedrock_validation_loss": "<b>api</b>"},
        notes=["a & b"],
        not_measured=not_measured(),
        created_at="2025-01-01T00:00:00Z",
    )
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;api" in page and "a &amp; b" in page
    assert "bedrock_validation_loss" in page and "1.5" in page
