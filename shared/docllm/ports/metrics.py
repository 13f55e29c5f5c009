"""Metrics port: CloudWatch (Powertools EMF) on AWS, a SQLite store locally."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    unit: str
    dimensions: tuple[tuple[str, str], ...]
    timestamp_ms: int


class MetricsSink(ABC):
    @abstractmethod
    def put(
        self, name: str, value: float, *, unit: str = "Count", dimensions: dict[str, str] | None = None
    ) -> None: ...

    @abstractmethod
    def flush(self) -> None: ...
