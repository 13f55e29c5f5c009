"""One alarm definition, both platforms: the local sink stores the dimension set (and resolution)
that Powertools emits on AWS, read back from the EMF JSON it prints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_lambda_powertools.metrics import Metrics

from docllm.adapters.aws.metrics import PowertoolsMetrics
from docllm.adapters.local.metrics import SqliteMetrics
from docllm.ports.metrics import InvalidMetricError


@pytest.fixture
def aws() -> Iterator[PowertoolsMetrics]:
    sink = PowertoolsMetrics("docllm", "docllm")
    yield sink
    Metrics(namespace="docllm", service="docllm").clear_metrics()


def emitted(out: str) -> list[tuple[dict[str, str], int]]:
    """(dimension set, storage resolution) of each metric of each EMF line."""
    found = []
    for text in out.splitlines():
        if not text.startswith("{"):
            continue
        blob = json.loads(text)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            (dims,) = directive["Dimensions"]
            for metric in directive["Metrics"]:
                found.append(({k: blob[k] for k in dims}, metric.get("StorageResolution", 60)))
    return found


@pytest.mark.parametrize(
    ("dimensions", "resolution"),
    [
        ({"Target": "local"}, 1),
        ({"Target": "local", "Family": "tiny-s3", "Version": "v2"}, 1),
        (None, 60),
        ({"service": "s3"}, 60),  # a service of the caller's own wins, on both
    ],
)
def test_the_local_sink_stores_the_dimension_set_and_resolution_powertools_emits(
    aws: PowertoolsMetrics, tmp_path: Path, capsys: pytest.CaptureFixture[str], dimensions, resolution
) -> None:
    local = SqliteMetrics(tmp_path / "metrics.db", namespace="docllm", service="docllm")
    for sink in (aws, local):
        sink.put("AskRequests", 1, dimensions=dimensions, resolution=resolution)
        sink.flush()
    ((aws_dims, aws_resolution),) = emitted(capsys.readouterr().out)
    (point,) = local.query("AskRequests")
    assert dict(point.dimensions) == aws_dims
    assert point.resolution == aws_resolution == resolution
    assert local.datapoints("AskRequests", aws_dims, 0, 2**62) == [point]


def test_datapoints_match_the_dimension_set_exactly_as_cloudwatch_does(tmp_path: Path) -> None:
    local = SqliteMetrics(tmp_path / "metrics.db")
    local.put("AskRequests", 1, dimensions={"Target": "local"})
    local.put("AskRequests", 1, dimensions={"Target": "local", "Family": "f", "Version": "v1"})
    local.flush()
    assert len(local.datapoints("AskRequests", {"Target": "local", "service": "docllm"}, 0, 2**62)) == 1
    assert local.datapoints("AskRequests", {"Target": "local"}, 0, 2**62) == []  # no service: another metric
    assert {frozenset(d.items()) for d in local.dimension_sets("AskRequests", 0, 2**62)} == {
        frozenset({"Target": "local", "service": "docllm"}.items()),
        frozenset({"Target": "local", "Family": "f", "Version": "v1", "service": "docllm"}.items()),
    }


def test_a_resolution_other_than_1_or_60_is_refused_by_both(aws: PowertoolsMetrics, tmp_path: Path) -> None:
    for sink in (aws, SqliteMetrics(tmp_path / "metrics.db")):
        with pytest.raises(InvalidMetricError, match="resolution"):
            sink.put("AskRequests", 1, resolution=5)


def test_a_metrics_file_of_an_older_docllm_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "metrics.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE metrics (ts_ms INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, "
            "unit TEXT NOT NULL, dims TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO metrics VALUES (1, 'Old', 2.0, 'Count', '[]')")
    local = SqliteMetrics(path)
    local.put("New", 1, resolution=1)
    local.flush()
    assert local.query("Old")[0].resolution == 60 and local.query("New")[0].resolution == 1
    assert local.totals() == {"New": 1.0, "Old": 2.0}
