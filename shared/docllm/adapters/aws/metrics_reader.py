"""CloudWatch adapter of :class:`docllm.ports.metrics.MetricsReader`: ``ListMetrics`` + ``GetMetricData``.

:meth:`CloudWatchMetricsReader.sums` lists the metrics of the namespace named ``name`` that carry the
fixed dimensions (``service`` of the platform's sink added, as Powertools adds it) and the grouping
dimension, keeps those whose dimension names are exactly these (CloudWatch treats every dimension set
as a metric of its own: ``{Target, Service}`` and ``{Target, Service, Version}`` are two metrics), and
sums each one's values over the window with ``GetMetricData`` (``Sum``, one period covering the
window). Both calls are paginated; ``GetMetricData`` takes at most :data:`MAX_QUERIES` queries a call.

IAM: ``cloudwatch:ListMetrics`` and ``cloudwatch:GetMetricData`` (``CanaryFunctionRole`` in
``template.yaml``).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import boto3

from docllm.adapters.aws.errors import aws_errors
from docllm.ports.metrics import MetricsReader

MAX_QUERIES = 500
"""``GetMetricData`` accepts at most 500 ``MetricDataQueries`` per request."""


def window_period(start: datetime, end: datetime) -> int:
    """One period covering ``[start, end)``: seconds, a multiple of 60 (at least 60), as CloudWatch
    requires of periods over a minute.

    >>> from datetime import timedelta
    >>> t = datetime(2024, 1, 1)
    >>> window_period(t, t + timedelta(minutes=5)), window_period(t, t + timedelta(seconds=61)), window_period(t, t)
    (300, 120, 60)
    """
    return max(60, math.ceil((end - start).total_seconds() / 60) * 60)


class CloudWatchMetricsReader(MetricsReader):
    """Parameters
    ----------
    namespace:
        The CloudWatch namespace (``"docllm"``).
    service:
        The ``service`` dimension the platform's sink adds (``PowertoolsMetrics``), matched unless
        ``fixed`` names one.
    client:
        A ``cloudwatch`` client; one is created on first use when omitted.
    """

    def __init__(self, namespace: str, service: str = "docllm", *, client: Any | None = None) -> None:
        self.namespace = namespace
        self.service = service
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client("cloudwatch")
        return self._client

    def sums(
        self,
        name: str,
        dimension_name: str,
        *,
        fixed: dict[str, str],
        start: datetime,
        end: datetime,
    ) -> dict[str, float]:
        wanted = {"service": self.service, **fixed}
        metrics = self._metrics(name, dimension_name, wanted)
        totals: dict[str, float] = {}
        period = window_period(start, end)
        for first in range(0, len(metrics), MAX_QUERIES):
            batch = metrics[first : first + MAX_QUERIES]
            queries = [
                {
                    "Id": f"m{n}",
                    "MetricStat": {"Metric": metric, "Period": period, "Stat": "Sum"},
                    "ReturnData": True,
                }
                for n, (_, metric) in enumerate(batch)
            ]
            values = self._metric_data(queries, start, end)
            for n, (value, _) in enumerate(batch):
                found = values.get(f"m{n}")
                if found:
                    totals[value] = totals.get(value, 0.0) + sum(found)
        return totals

    def _metrics(self, name: str, dimension_name: str, wanted: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
        """``(value of dimension_name, the metric)`` of every metric on exactly ``wanted`` + ``dimension_name``."""
        request: dict[str, Any] = {
            "Namespace": self.namespace,
            "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in wanted.items()] + [{"Name": dimension_name}],
        }
        found: list[tuple[str, dict[str, Any]]] = []
        seen: set[tuple[tuple[str, str], ...]] = set()
        with aws_errors(f"CloudWatch ListMetrics {self.namespace}/{name}"):
            while True:
                page = self.client.list_metrics(**request)
                for metric in page.get("Metrics", []):
                    dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                    value = dims.pop(dimension_name, None)
                    key = tuple(sorted({**dims, dimension_name: value or ""}.items()))
                    if value is None or dims != wanted or key in seen:
                        continue
                    seen.add(key)
                    found.append((value, metric))
                token = page.get("NextToken")
                if not token:
                    return found
                request["NextToken"] = token

    def _metric_data(self, queries: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, list[float]]:
        """Every value each query returned over ``[start, end)``, by query id (all pages)."""
        request: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
        values: dict[str, list[float]] = {}
        with aws_errors("CloudWatch GetMetricData"):
            while True:
                page = self.client.get_metric_data(**request)
                for result in page.get("MetricDataResults", []):
                    values.setdefault(result["Id"], []).extend(float(v) for v in result.get("Values", []))
                token = page.get("NextToken")
                if not token:
                    return values
                request["NextToken"] = token
