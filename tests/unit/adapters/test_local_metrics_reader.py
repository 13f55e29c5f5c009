"""SqliteMetrics as a MetricsReader: sums per value of one dimension over the dimension sets that are
exactly the fixed ones plus it (``service`` included, as CloudWatch matches metrics), in a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from docllm.adapters.local.metrics import SqliteMetrics
from docllm.ports.metrics import MetricsReader


def window(minutes: int = 5) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(minutes=minutes), now + timedelta(seconds=1)


def test_sums_per_value_of_the_dimension_on_exact_dimension_sets(tmp_path: Path) -> None:
    sink = SqliteMetrics(tmp_path / "metrics.db")
    assert isinstance(sink, MetricsReader)
    for service, n in {"s3": 3, "iam": 2}.items():
        for _ in range(n):
            sink.put("AskQuestions", 1, dimensions={"Target": "local", "Service": service})
    sink.put("AskQuestions", 7, dimensions={"Target": "other", "Service": "s3"})  # another target
    sink.put("AskQuestions", 7, dimensions={"Target": "local", "Service": "s3", "Version": "v1"})  # a superset
    sink.put("AskQuestions", 7, dimensions={"Target": "local"})  # no Service
    sink.put("AskQuestions", 7, dimensions={"Target": "local", "Service": "s3", "service": "ingest"})  # other sink
    sink.put("AskRequests", 7, dimensions={"Target": "local", "Service": "s3"})  # another metric
    sink.flush()
    start, end = window()

    assert sink.sums("AskQuestions", "Service", fixed={"Target": "local"}, start=start, end=end) == {
        "s3": 3.0,
        "iam": 2.0,
    }
    assert sink.sums("AskQuestions", "Service", fixed={"Target": "other"}, start=start, end=end) == {"s3": 7.0}
    ingest = {"Target": "local", "service": "ingest"}
    assert sink.sums("AskQuestions", "Service", fixed=ingest, start=start, end=end) == {"s3": 7.0}
    assert sink.sums("AskQuestions", "Service", fixed={"Target": "none"}, start=start, end=end) == {}


def test_only_the_window_counts(tmp_path: Path) -> None:
    sink = SqliteMetrics(tmp_path / "metrics.db")
    sink.put("AskQuestions", 1, dimensions={"Target": "local", "Service": "s3"})
    sink.flush()
    start, end = window()
    before = start - timedelta(hours=1)
    assert sink.sums("AskQuestions", "Service", fixed={"Target": "local"}, start=before, end=start) == {}
    assert sink.sums("AskQuestions", "Service", fixed={"Target": "local"}, start=end, end=end + timedelta(1)) == {}
    naive = start.replace(tzinfo=None)  # a naive datetime is UTC
    assert sink.sums("AskQuestions", "Service", fixed={"Target": "local"}, start=naive, end=end) == {"s3": 1.0}
