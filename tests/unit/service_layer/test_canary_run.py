"""The scheduled canary over the local platform (docllm.service_layer.canary, services/canary/app.py):
the answer path in process with a stand-in engine, the metrics it publishes with their exact
dimensions, the runs it records, and what it does when nothing is deployed."""

from __future__ import annotations

import importlib.util
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docllm.adapters.local.metrics import SqliteMetrics
from docllm.bootstrap import Platform, build_platform, reset_platforms
from docllm.dataset.versions import DatasetDocument, DatasetManifest, DatasetStats
from docllm.exceptions import ContractError
from docllm.monitoring import names
from docllm.monitoring.canary import CANARY_SET_KEY, NOT_COVERED_QUESTIONS
from docllm.monitoring.drift import service_mix_divergence
from docllm.ports.inference import Generation, GenerationParams
from docllm.ports.metrics import MetricsReader, MetricsSink
from docllm.runtime.local import LocalContext
from docllm.service_layer import canary
from docllm.service_layer.deploy import ENDPOINTS_PK
from docllm.service_layer.jobs import MODELS_PK
from docllm.serving.exceptions import EngineBusyError, EngineUnavailableError, NoModelDeployedError
from docllm.settings import Settings
from tests.conftest import REPO
from tests.unit.answers.fakes import FakeEngine, small_index

SCHEDULED = {"source": "docllm.schedule", "detail-type": "Canary Run Requested", "detail": {}}
_WORD = re.compile(r"[a-z0-9]+")


def extractive(prompt: str) -> str:
    """What a model answering from its context does at best: the first passage's sentence sharing
    the most words with the question."""
    question = prompt.split("### Question:\n", 1)[1].split("\n\n### Answer:", 1)[0]
    context = prompt.split("### Context:\n", 1)[1].split("\n\n### Question:", 1)[0]
    passage = re.split(r"\n\n\[2\] ", context, maxsplit=1)[0].split("\n", 1)[1]
    wanted = set(_WORD.findall(question.lower()))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", passage) if len(s.split()) >= 4]
    return max(sentences, key=lambda s: len(wanted & set(_WORD.findall(s.lower()))), default="")


class RecordedMetrics(MetricsSink):
    def __init__(self) -> None:
        self.points: list[tuple[str, float, str, dict[str, str]]] = []
        self.flushed = 0

    def put(
        self,
        name: str,
        value: float,
        *,
        unit: str = "Count",
        dimensions: dict[str, str] | None = None,
        resolution: int = 60,
    ) -> None:
        self.points.append((name, value, unit, dict(dimensions or {})))

    def flush(self) -> None:
        self.flushed += 1


def platform(data: Path, engine: Any) -> tuple[Platform, RecordedMetrics]:
    p = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data)}), template=REPO / "template.yaml"
    )
    return equip(p, data, engine)


def equip(p: Platform, data: Path, engine: Any) -> tuple[Platform, RecordedMetrics]:
    metrics = RecordedMetrics()
    # What the canary publishes is recorded; what it reads back (the live service mix) is metrics.db.
    reader = SqliteMetrics(data / "metrics.db")
    p.__dict__.update(search=small_index(data / "index"), inference=engine, metrics=metrics, metrics_reader=reader)
    return p, metrics


def live_questions(p: Platform, services: dict[str, int], target: str = "local") -> None:
    """What the answer path records of ``services``' questions on ``target`` (``AskQuestions``)."""
    sink = p.metrics_reader
    assert isinstance(sink, SqliteMetrics)
    for service, n in services.items():
        for _ in range(n):
            sink.put(names.ASK_QUESTIONS, 1, dimensions=names.question_dimensions(target, service))
    sink.flush()


def deployed(p: Platform, version: str = "tiny-s3-v1", *, canary_version: str | None = None) -> None:
    for v in {version, canary_version} - {None}:
        p.state.put(MODELS_PK, str(v), {"family": "tiny-s3", "dataset_version": "ds-1"})
    record: dict[str, Any] = {"target": "local", "model_version": version, "family": "tiny-s3", "url": "http://x"}
    if canary_version:
        record["canary"] = {"model_version": canary_version, "weight": 50}
    p.state.put(ENDPOINTS_PK, "local", record)


OPERATOR_SET = [
    {"question": "How do I enable versioning on a bucket?", "expect": "answer", "doc_keys": ["s3/Versioning.md"]},
    {
        "question": "What is the maximum size of individual Amazon S3 objects?",
        "expect": "answer",
        "doc_keys": ["s3/UploadingObjects.md"],
    },
    {"question": "What is an IAM role?", "expect": "answer", "doc_keys": ["iam/id_roles.md"]},
    {"question": "How do I bake sourdough bread at home?", "expect": "abstain"},
]


def operator_set(p: Platform, rows: list[dict[str, Any]] = OPERATOR_SET) -> None:
    body = "\n".join(json.dumps(r) for r in rows).encode()
    p.objects.put(p.settings.raw_bucket, CANARY_SET_KEY, body)


def by_name(metrics: RecordedMetrics, name: str) -> list[tuple[float, str, dict[str, str]]]:
    return [(v, u, d) for n, v, u, d in metrics.points if n == name]


TARGET = {"Target": "local"}
VERSIONED = {"Target": "local", "Family": "tiny-s3", "Version": "tiny-s3-v1"}


def test_a_run_asks_every_question_and_publishes_accuracy_under_both_dimension_sets(tmp_path: Path) -> None:
    engine = FakeEngine(extractive)
    p, metrics = platform(tmp_path, engine)
    deployed(p)
    held_out_dataset(p)
    operator_set(p)

    run = canary.handle_canary_event(p, SCHEDULED)

    assert run["outcome"] == "measured" and run["set"]["source"] == "operator"
    assert (run["questions"], run["correct"], run["errors"], run["accuracy"]) == (4, 4, 0, 100.0)
    assert [r["correct"] for r in run["results"]] == [True] * 4
    assert run["results"][3]["abstained"] is True and run["results"][0]["cited"] == ["s3/Versioning.md"]
    assert len(engine.prompts) == 3  # the uncovered question abstained before generating
    assert by_name(metrics, "CanaryAccuracy") == [(100.0, "Percent", TARGET), (100.0, "Percent", VERSIONED)]
    assert by_name(metrics, "CanaryQuestions") == [(4, "Count", TARGET), (4, "Count", VERSIONED)]
    assert metrics.flushed >= 1
    # No live question in the window: the shift is not published, and the run says so.
    assert by_name(metrics, "DriftServiceShift") == []
    assert run["drift_service_shift"] is None and "DriftServiceShift not published" in run["drift_note"]


def test_live_questions_publish_the_service_shift_under_both_dimension_sets(tmp_path: Path) -> None:
    p, metrics = platform(tmp_path, FakeEngine(extractive))
    deployed(p)
    held_out_dataset(p)  # the training split: iam 1, s3 2
    operator_set(p)
    live_questions(p, {"s3": 3, "ec2": 1})
    live_questions(p, {"iam": 50}, target="other")  # another target's questions are not this one's
    reader = p.metrics_reader
    assert isinstance(reader, SqliteMetrics)
    versioned = {**names.question_dimensions("local", "iam"), "Version": "tiny-s3-v1"}
    reader.put(names.ASK_QUESTIONS, 50, dimensions=versioned)  # another dimension set: another metric
    reader.flush()

    run = canary.run_canary(p, "local")

    expected = round(service_mix_divergence({"s3": 3, "ec2": 1}, {"iam": 1, "s3": 2}), 6)
    assert 0 < expected < 1
    assert by_name(metrics, "DriftServiceShift") == [(expected, "None", TARGET), (expected, "None", VERSIONED)]
    assert run["drift_service_shift"] == expected and run["drift_note"] is None
    assert canary.live_service_mix(p, "local", since_s=0) == {"ec2": 1, "s3": 3}


def test_questions_older_than_the_window_do_not_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p, metrics = platform(tmp_path, FakeEngine(extractive))
    deployed(p)
    held_out_dataset(p)
    operator_set(p)
    live_questions(p, {"s3": 3})
    later = time.time() + canary.LIVE_WINDOW_S + 5
    monkeypatch.setattr(canary.time, "time", lambda: later)

    run = canary.run_canary(p, "local")

    assert by_name(metrics, "DriftServiceShift") == [] and run["drift_service_shift"] is None


def test_unreadable_metrics_cost_the_shift_only(tmp_path: Path) -> None:
    p, metrics = platform(tmp_path, FakeEngine(extractive))
    deployed(p)
    held_out_dataset(p)
    operator_set(p)

    class Broken(MetricsReader):
        def sums(self, *args: Any, **kwargs: Any) -> dict[str, float]:
            raise RuntimeError("AccessDenied")

    p.__dict__["metrics_reader"] = Broken()
    run = canary.run_canary(p, "local")

    assert run["outcome"] == "measured" and by_name(metrics, "CanaryAccuracy")
    assert by_name(metrics, "DriftServiceShift") == [] and "AccessDenied" in run["drift_note"]


def test_wrong_answers_and_failed_requests_lower_the_accuracy(tmp_path: Path) -> None:
    calls = iter(range(100))

    def flaky(prompt: str) -> str:
        if next(calls) == 0:
            raise EngineUnavailableError("connection refused")
        return "Paint it blue on Tuesdays."  # aligns with no passage: abstains (no_citations)

    p, metrics = platform(tmp_path, FakeEngine(flaky))
    deployed(p)
    operator_set(p)

    run = canary.run_canary(p, "local")

    assert (run["questions"], run["correct"], run["errors"]) == (4, 1, 1)  # only the abstention is right
    assert run["results"][0]["error"] == "EngineUnavailableError: connection refused"
    assert run["results"][1]["reason"] == "no_citations"
    assert by_name(metrics, "CanaryAccuracy") == [(25.0, "Percent", TARGET), (25.0, "Percent", VERSIONED)]


def test_nothing_deployed_publishes_nothing_and_is_recorded(tmp_path: Path) -> None:
    p, metrics = platform(tmp_path, FakeEngine(extractive))
    operator_set(p)

    run = canary.handle_canary_event(p, SCHEDULED)

    assert run["outcome"] == canary.NOTHING_DEPLOYED
    assert metrics.points == []
    assert [r["outcome"] for r in canary.canary_runs(p, "local")] == [canary.NOTHING_DEPLOYED]


def test_an_engine_that_serves_no_model_counts_as_nothing_deployed(tmp_path: Path) -> None:
    class Empty(FakeEngine):
        def info(self) -> Any:
            raise NoModelDeployedError("no model deployed")

    p, metrics = platform(tmp_path, Empty())
    deployed(p)
    operator_set(p, [OPERATOR_SET[0]])

    assert canary.run_canary(p, "local")["outcome"] == canary.NOTHING_DEPLOYED
    assert metrics.points == []


class TwoVersions(FakeEngine):
    """A canary split: answers alternate between the stable and the canary version."""

    def __init__(self) -> None:
        super().__init__(extractive)
        self.n = 0

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        self.n += 1
        gen = super().generate(prompt, params)
        return gen.model_copy(update={"model": "tiny-s3-v2" if self.n % 2 == 0 else "tiny-s3-v1"})


def test_under_a_canary_split_each_answering_version_gets_its_own_figures(tmp_path: Path) -> None:
    p, metrics = platform(tmp_path, TwoVersions())
    deployed(p, canary_version="tiny-s3-v2")
    operator_set(p, OPERATOR_SET[:3])

    run = canary.run_canary(p, "local")

    assert run["canary_version"] == "tiny-s3-v2"
    assert {v: t["questions"] for v, t in run["by_version"].items()} == {"tiny-s3-v1": 2, "tiny-s3-v2": 1}
    assert by_name(metrics, "CanaryQuestions") == [
        (3, "Count", TARGET),
        (2, "Count", VERSIONED),
        (1, "Count", {**VERSIONED, "Version": "tiny-s3-v2"}),
    ]


def held_out_dataset(p: Platform) -> None:
    """Dataset ds-1: the versioning page held out (test split), the rest trained on."""
    docs = [
        DatasetDocument(
            doc_key=k, sha256="0" * 64, service=k.split("/")[0], split=s, chunk_ids=[f"{k}#0"], token_estimate=9
        )
        for k, s in [
            ("s3/Versioning.md", "test"),
            ("s3/UploadingObjects.md", "train"),
            ("s3/lifecycle.md", "train"),
            ("iam/id_roles.md", "train"),
        ]
    ]
    manifest = DatasetManifest(version="ds-1", created_at="", services=[], documents=docs, stats=DatasetStats())
    bucket = p.settings.artifact_bucket
    p.objects.put(bucket, "datasets/ds-1/manifest.json", manifest.model_dump_json().encode())
    text = (
        "# Versioning\n\n## Enabling versioning\n\n"
        "Versioning keeps multiple variants of an object in the same bucket.\n\n"
        "A delete marker is a placeholder for a versioned object that was deleted.\n"
    )
    row = {"chunk_id": "s3/Versioning.md#0", "doc_key": "s3/Versioning.md", "text": text}
    p.objects.put(bucket, "datasets/ds-1/test.jsonl", (json.dumps(row) + "\n").encode())


def test_without_an_operator_set_the_default_set_is_built_once_from_held_out_pages(tmp_path: Path) -> None:
    p, metrics = platform(tmp_path, FakeEngine(extractive))
    deployed(p)
    held_out_dataset(p)

    run = canary.run_canary(p, "local")

    assert run["set"] == {
        "source": "default", "dataset_version": "ds-1", "split": "test", "error": None,
        "questions": run["questions"],
    }  # fmt: skip
    covered = [r for r in run["results"] if r["expect"] == "answer"]
    assert covered and all(r["question"].endswith("?") for r in covered)
    assert [r["question"] for r in run["results"] if r["expect"] == "abstain"] == list(NOT_COVERED_QUESTIONS)
    assert run["questions"] == len(covered) + len(NOT_COVERED_QUESTIONS)
    cached = p.state.get(canary.CANARY_SETS_PK, "ds-1#r1")
    assert cached is not None and cached["reference_mix"] == {"iam": 1, "s3": 2}

    # Built once: the next run asks the same questions without reading the dataset again.
    p.objects.delete(p.settings.artifact_bucket, "datasets/ds-1/test.jsonl")
    again = canary.run_canary(p, "local")
    assert [r["question"] for r in again["results"]] == [r["question"] for r in run["results"]]
    assert by_name(metrics, "CanaryQuestions")[-1] == (run["questions"], "Count", VERSIONED)


def test_an_invalid_operator_set_is_reported_and_the_default_set_runs(tmp_path: Path) -> None:
    p, _ = platform(tmp_path, FakeEngine(extractive))
    deployed(p)
    operator_set(p, [{"question": "How do I enable versioning?", "expect": "answer"}])

    run = canary.run_canary(p, "local")

    assert run["set"]["source"] == "default" and "canary.jsonl:1:" in run["set"]["error"]
    # No dataset manifest either: the fixed not-covered questions still measure something.
    assert [r["question"] for r in run["results"]] == list(NOT_COVERED_QUESTIONS)


def test_runs_are_recorded_newest_first_and_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(canary, "KEEP_RUNS", 2)
    p, _ = platform(tmp_path, FakeEngine(extractive))
    deployed(p)
    operator_set(p, [OPERATOR_SET[3]])
    ids = []
    for i in range(3):
        ids.append(canary.run_canary(p, "local", run_id=f"run-{i}")["run_id"])
        # Runs are ordered by their times, which have millisecond resolution; a run against the fake
        # engine can take less than that.
        time.sleep(0.002)

    runs = canary.canary_runs(p, "local")
    assert [r["run_id"] for r in runs] == ids[:0:-1]
    assert runs[0]["results"][0]["expect"] == "abstain"


def test_a_spent_time_budget_leaves_questions_unasked_and_uncounted(tmp_path: Path) -> None:
    p, metrics = platform(tmp_path, FakeEngine(extractive))
    deployed(p)
    operator_set(p)

    run = canary.run_canary(p, "local", budget_s=0)

    assert (run["questions"], run["skipped"], run["accuracy"]) == (0, 4, None)
    assert by_name(metrics, "CanaryAccuracy") == []


def test_another_event_is_a_contract_error(tmp_path: Path) -> None:
    p, _ = platform(tmp_path, FakeEngine(extractive))
    with pytest.raises(ContractError):
        canary.handle_canary_event(p, {**SCHEDULED, "detail-type": "Model Deployed"})


def load_handler() -> Any:
    spec = importlib.util.spec_from_file_location("docllm_test_canary_app", REPO / "services" / "canary" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DOCLLM_BACKEND", "local")
    monkeypatch.setenv("DOCLLM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DOCLLM_TEMPLATE", str(REPO / "template.yaml"))
    reset_platforms()
    yield tmp_path
    reset_platforms()


def test_the_function_runs_the_canary_on_the_schedules_payload(environment: Path) -> None:
    p, metrics = equip(build_platform(), environment, FakeEngine(extractive))
    deployed(p)
    operator_set(p)

    result = load_handler()(SCHEDULED, LocalContext(function_name="CanaryFunction", timeout_s=120))

    assert result["outcome"] == "measured" and result["accuracy"] == 100.0 and result["trigger"] == "docllm.schedule"
    assert by_name(metrics, "CanaryAccuracy")[0] == (100.0, "Percent", TARGET)


def test_a_busy_engine_is_asked_once_more_before_the_question_counts_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(canary, "BUSY_RETRY_S", 0)
    busy = iter([True, False, True, True])

    def reply(prompt: str) -> str:
        if next(busy):
            raise EngineBusyError("queue full")
        return extractive(prompt)

    p, _ = platform(tmp_path, FakeEngine(reply))
    deployed(p)
    operator_set(p, OPERATOR_SET[:2])

    run = canary.run_canary(p, "local")

    assert [r["correct"] for r in run["results"]] == [True, False]
    assert run["results"][1]["error"] == "EngineBusyError: queue full"


def test_a_default_set_built_while_the_index_lacks_the_pages_is_built_again_later(tmp_path: Path) -> None:
    p, _ = platform(tmp_path, FakeEngine(extractive))
    deployed(p)
    held_out_dataset(p)
    p.search.delete_document("s3/Versioning.md")

    first = canary.run_canary(p, "local")
    assert [r["expect"] for r in first["results"]] == ["abstain"] * len(NOT_COVERED_QUESTIONS)
    assert p.state.get(canary.CANARY_SETS_PK, "ds-1#r1") is None

    p.__dict__.pop("search_reader", None)  # the reader is the (cached) index itself locally
    p.__dict__["search"] = small_index(tmp_path / "index-again")
    second = canary.run_canary(p, "local")
    assert "answer" in [r["expect"] for r in second["results"]]
