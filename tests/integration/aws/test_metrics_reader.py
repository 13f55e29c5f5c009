"""CloudWatchMetricsReader over moto: ListMetrics + GetMetricData sums per dimension value, on the exact
dimension sets only, paginated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from docllm.adapters.aws.metrics_reader import CloudWatchMetricsReader
from docllm.exceptions import PermanentError


def put(client: Any, value: float, dims: dict[str, str], *, name: str = "AskQuestions", at: datetime) -> None:
    client.put_metric_data(
        Namespace="docllm",
        MetricData=[
            {
                "MetricName": name,
                "Value": value,
                "Unit": "Count",
                "Timestamp": at,
                "Dimensions": [{"Name": k, "Value": v} for k, v in {"service": "docllm", **dims}.items()],
            }
        ],
    )


@pytest.mark.usefixtures("aws")
def test_sums_per_service_on_the_exact_dimension_sets_in_the_window() -> None:
    client = boto3.client("cloudwatch")
    now = datetime.now(UTC).replace(microsecond=0)
    for service, n in {"s3": 3, "iam": 2}.items():
        for i in range(n):
            put(client, 1, {"Target": "local", "Service": service}, at=now - timedelta(minutes=i + 1))
    put(client, 9, {"Target": "other", "Service": "s3"}, at=now - timedelta(minutes=1))
    put(client, 9, {"Target": "local", "Service": "s3", "Version": "v1"}, at=now - timedelta(minutes=1))
    put(client, 9, {"Target": "local"}, at=now - timedelta(minutes=1))
    put(client, 9, {"Target": "local", "Service": "s3"}, at=now - timedelta(hours=3))  # before the window
    put(client, 9, {"Target": "local", "Service": "s3"}, name="AskRequests", at=now - timedelta(minutes=1))
    reader = CloudWatchMetricsReader("docllm", client=client)
    start, end = now - timedelta(hours=1), now + timedelta(minutes=1)

    assert reader.sums("AskQuestions", "Service", fixed={"Target": "local"}, start=start, end=end) == {
        "s3": 3.0,
        "iam": 2.0,
    }
    assert reader.sums("AskQuestions", "Service", fixed={"Target": "other"}, start=start, end=end) == {"s3": 9.0}
    assert reader.sums("AskQuestions", "Service", fixed={"Target": "none"}, start=start, end=end) == {}


class Paged:
    """A cloudwatch client answering ListMetrics and GetMetricData a page at a time."""

    def __init__(self, services: list[str]) -> None:
        self.services = services
        self.list_calls: list[dict[str, Any]] = []
        self.data_calls: list[dict[str, Any]] = []

    def list_metrics(self, **request: Any) -> dict[str, Any]:
        self.list_calls.append(request)
        start = int(request.get("NextToken", "0"))
        page = self.services[start : start + 2]
        metrics = [
            {
                "Namespace": "docllm",
                "MetricName": "AskQuestions",
                "Dimensions": [
                    {"Name": "service", "Value": "docllm"},
                    {"Name": "Target", "Value": "local"},
                    {"Name": "Service", "Value": s},
                ],
            }
            for s in page
        ]
        more = start + 2 < len(self.services)
        return {"Metrics": metrics, **({"NextToken": str(start + 2)} if more else {})}

    def get_metric_data(self, **request: Any) -> dict[str, Any]:
        self.data_calls.append(request)
        ids = [q["Id"] for q in request["MetricDataQueries"]]
        if "NextToken" not in request:  # the first page holds one value each, the second another
            return {"MetricDataResults": [{"Id": i, "Values": [1.0]} for i in ids], "NextToken": "p2"}
        return {"MetricDataResults": [{"Id": i, "Values": [2.0]} for i in ids]}


def test_both_calls_are_paginated_and_the_window_is_one_period() -> None:
    client = Paged(["s3", "iam", "ec2", "s3"])  # s3 listed twice: counted once
    reader = CloudWatchMetricsReader("docllm", client=client)
    start = datetime(2024, 1, 1, tzinfo=UTC)

    sums = reader.sums(
        "AskQuestions", "Service", fixed={"Target": "local"}, start=start, end=start + timedelta(hours=1)
    )

    assert sums == {"s3": 3.0, "iam": 3.0, "ec2": 3.0}
    assert len(client.list_calls) == 2 and client.list_calls[1]["NextToken"] == "2"
    assert client.list_calls[0]["Dimensions"] == [
        {"Name": "service", "Value": "docllm"},
        {"Name": "Target", "Value": "local"},
        {"Name": "Service"},
    ]
    assert len(client.data_calls) == 2
    (query, *_) = client.data_calls[0]["MetricDataQueries"]
    assert query["MetricStat"]["Period"] == 3600 and query["MetricStat"]["Stat"] == "Sum"


@pytest.mark.usefixtures("aws")
def test_a_refused_call_is_a_docllm_error() -> None:
    client = boto3.client("cloudwatch")
    reader = CloudWatchMetricsReader("docllm", client=client)
    now = datetime.now(UTC)
    put(client, 1, {"Target": "local", "Service": "s3"}, at=now)
    with pytest.raises(PermanentError):  # an end before the start: moto refuses it, as CloudWatch does
        reader.sums("AskQuestions", "Service", fixed={"Target": "local"}, start=now, end=now - timedelta(hours=1))
