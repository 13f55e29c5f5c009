"""Metrics ports: the sink (CloudWatch via Powertools EMF on AWS, a SQLite store locally) and the
reader (CloudWatch's ``ListMetrics``/``GetMetricData`` on AWS, the same SQLite store locally)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from docllm.exceptions import PermanentError

#: ``resolution`` of a high-resolution metric (CloudWatch ``StorageResolution`` 1: 1-second data,
#: alarms with 10 s or 30 s periods); 60 is standard resolution.
HIGH_RESOLUTION = 1
STANDARD_RESOLUTION = 60


class InvalidMetricError(PermanentError):
    """A metric a sink refuses (unknown unit, non-numeric value, too many dimensions, a resolution
    other than 1 or 60)."""


def check_resolution(name: str, resolution: int) -> None:
    """Refuse a ``resolution`` other than 1 (high) or 60 (standard), as both adapters' ``put`` do.

    >>> check_resolution("AskRequests", HIGH_RESOLUTION)
    >>> check_resolution("AskRequests", 5)
    Traceback (most recent call last):
    ...
    docllm.ports.metrics.InvalidMetricError: metric 'AskRequests': resolution is 1 (high) or 60 (standard), not 5
    """
    if resolution not in (HIGH_RESOLUTION, STANDARD_RESOLUTION):
        raise InvalidMetricError(f"metric {name!r}: resolution is 1 (high) or 60 (standard), not {resolution!r}")


@dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    unit: str
    dimensions: tuple[tuple[str, str], ...]
    timestamp_ms: int
    resolution: int = STANDARD_RESOLUTION


class MetricsSink(ABC):
    @abstractmethod
    def put(
        self,
        name: str,
        value: float,
        *,
        unit: str = "Count",
        dimensions: dict[str, str] | None = None,
        resolution: int = STANDARD_RESOLUTION,
    ) -> None:
        """Record one value of metric ``name`` on exactly one dimension set.

        Both adapters add the ``service`` dimension (Powertools does on AWS), unless ``dimensions``
        names a ``service`` of its own. ``resolution``: 60 (standard) or 1 (high resolution).
        """

    @abstractmethod
    def flush(self) -> None: ...


class MetricsReader(ABC):
    """The read side of the metrics: what a stage needs to read back (the canary's live service mix).

    CloudWatch on AWS (``ListMetrics`` + ``GetMetricData``), ``metrics.db`` locally. As CloudWatch,
    each dimension set is a metric of its own: :meth:`sums` adds up only the metrics whose dimensions
    are exactly ``fixed`` plus ``dimension_name`` (the ``service`` dimension the sinks add included
    in ``fixed`` or not: both adapters add the platform's own when ``fixed`` names none).
    """

    @abstractmethod
    def sums(
        self,
        name: str,
        dimension_name: str,
        *,
        fixed: dict[str, str],
        start: datetime,
        end: datetime,
    ) -> dict[str, float]:
        """The sum of metric ``name``'s values in ``[start, end)`` per value of ``dimension_name``, over
        the metrics whose other dimensions equal ``fixed`` (values with no data are absent)."""
