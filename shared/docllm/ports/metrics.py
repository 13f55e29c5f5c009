"""Metrics port: CloudWatch (Powertools EMF) on AWS, a SQLite store locally."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

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
