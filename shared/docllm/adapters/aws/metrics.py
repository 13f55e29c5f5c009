"""CloudWatch adapter of :class:`docllm.ports.metrics.MetricsSink` (Powertools EMF).

Powertools writes metrics as CloudWatch Embedded Metric Format JSON lines to
stdout; Lambda ships stdout to CloudWatch Logs, which extracts the metrics.
No CloudWatch API call is made, so no client and no IAM permission on
``cloudwatch:PutMetricData`` are needed.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricResolution, Metrics, MetricUnit, single_metric
from aws_lambda_powertools.metrics.exceptions import (
    MetricResolutionError,
    MetricUnitError,
    MetricValueError,
    SchemaValidationError,
)

from docllm.ports.metrics import (
    HIGH_RESOLUTION,
    STANDARD_RESOLUTION,
    InvalidMetricError,
    MetricsSink,
    check_resolution,
)

_POWERTOOLS_ERRORS = (MetricUnitError, MetricValueError, MetricResolutionError, SchemaValidationError)

__all__ = ["InvalidMetricError", "PowertoolsMetrics"]


class PowertoolsMetrics(MetricsSink):
    """Emit metrics through ``aws_lambda_powertools.Metrics``.

    A metric without dimensions is buffered in the shared ``Metrics`` set (one
    EMF line for all of them at :meth:`flush`, with the ``service``
    dimension). EMF gives one dimension set to all metrics of a line, so a
    metric with its own dimensions is written at once as its own line
    (Powertools' ``single_metric``), with ``service`` added.

    Parameters
    ----------
    namespace:
        CloudWatch namespace (``"docllm"``).
    service:
        Value of the ``service`` dimension (``"ingest"``).
    metrics:
        A ``Metrics`` (or ``EphemeralMetrics``) to use; by default a new
        ``Metrics``, whose buffer Powertools shares between instances in a
        process, so a handler's ``@metrics.log_metrics`` flushes ours too.

    Examples
    --------
    >>> sink = PowertoolsMetrics("docllm", "ingest")
    >>> sink.put("DocumentsProcessed", 1)
    >>> sink.put("ChunkLatency", 12.5, unit="Milliseconds", dimensions={"format": "pdf"})  # doctest: +SKIP
    >>> sink.flush()  # doctest: +SKIP
    """

    def __init__(self, namespace: str, service: str, *, metrics: Metrics | None = None) -> None:
        self.namespace = namespace
        self.service = service
        self._metrics = metrics if metrics is not None else Metrics(namespace=namespace, service=service)
        self._buffered = 0

    def put(
        self,
        name: str,
        value: float,
        *,
        unit: str = "Count",
        dimensions: dict[str, str] | None = None,
        resolution: int = STANDARD_RESOLUTION,
    ) -> None:
        try:
            metric_unit = MetricUnit(unit)
        except ValueError as e:
            allowed = ", ".join(u.value for u in MetricUnit)
            raise InvalidMetricError(f"metric {name!r}: unknown unit {unit!r}; one of {allowed}") from e
        check_resolution(name, resolution)
        metric_resolution = MetricResolution.High if resolution == HIGH_RESOLUTION else MetricResolution.Standard
        try:
            if not dimensions:
                self._metrics.add_metric(name=name, unit=metric_unit, value=value, resolution=metric_resolution)
                self._buffered += 1
                return
            with single_metric(
                name=name,
                unit=metric_unit,
                value=value,
                resolution=metric_resolution,
                namespace=self.namespace,
                default_dimensions={"service": self.service},
            ) as metric:
                for key, dim_value in dimensions.items():
                    metric.add_dimension(name=key, value=dim_value)
        except _POWERTOOLS_ERRORS as e:
            raise InvalidMetricError(f"metric {name!r} refused: {e}") from e

    def flush(self) -> None:
        """Write the buffered metrics as one EMF line; nothing when none are buffered.

        Skipping the empty case avoids Powertools' "no metrics" warning on
        every invocation that only emitted dimensioned metrics.
        """
        if not self._buffered:
            return
        try:
            self._metrics.flush_metrics()
        except _POWERTOOLS_ERRORS as e:
            raise InvalidMetricError(f"metrics refused at flush: {e}") from e
        finally:
            self._buffered = 0
