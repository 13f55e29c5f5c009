"""PowertoolsMetrics: the EMF JSON it prints is what CloudWatch would extract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.metrics import Metrics

from docllm.adapters.aws.metrics import InvalidMetricError, PowertoolsMetrics


@pytest.fixture
def sink() -> Iterator[PowertoolsMetrics]:
    sink = PowertoolsMetrics("docllm", "ingest")
    yield sink
    # Powertools shares the buffer of every Metrics in the process: leave it empty.
    Metrics(namespace="docllm", service="ingest").clear_metrics()


def emf_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def metric_names(blob: dict[str, Any]) -> list[str]:
    return [m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]


def test_undimensioned_metrics_are_buffered_until_flush(
    sink: PowertoolsMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    sink.put("DocumentsProcessed", 2)
    sink.put("BytesRead", 1024, unit="Bytes")
    assert emf_lines(capsys.readouterr().out) == []
    sink.flush()
    (blob,) = emf_lines(capsys.readouterr().out)
    directive = blob["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "docllm"
    assert directive["Dimensions"] == [["service"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "DocumentsProcessed": "Count",
        "BytesRead": "Bytes",
    }
    assert blob["service"] == "ingest"
    assert blob["DocumentsProcessed"] == [2.0]


def test_dimensioned_metric_is_its_own_emf_line_with_its_dimensions(
    sink: PowertoolsMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    sink.put("ChunkLatency", 12.5, unit="Milliseconds", dimensions={"format": "pdf"})
    sink.put("ChunkLatency", 3.0, unit="Milliseconds", dimensions={"format": "html"})
    lines = emf_lines(capsys.readouterr().out)
    assert [b["format"] for b in lines] == ["pdf", "html"]
    for blob in lines:
        directive = blob["_aws"]["CloudWatchMetrics"][0]
        assert sorted(directive["Dimensions"][0]) == ["format", "service"]
        assert metric_names(blob) == ["ChunkLatency"]
        assert blob["service"] == "ingest"


def test_flush_with_nothing_buffered_prints_nothing(
    sink: PowertoolsMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    sink.flush()
    assert emf_lines(capsys.readouterr().out) == []


def test_unknown_unit_is_a_clear_permanent_error(sink: PowertoolsMetrics) -> None:
    with pytest.raises(InvalidMetricError, match="Parsecs"):
        sink.put("Distance", 1, unit="Parsecs")
