"""Every ``POST /v1/ask`` is measured (issue 16, Deliver 1 and 2): requests, errors by class, latency,
answers flagged ungrounded, abstentions, retrieval score and drift, under ``{Target}`` and
``{Target, Family, Version}``, read back from the local metrics store the alarms read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from docllm.api import routes
from docllm.monitoring import ask_metrics, names
from docllm.runtime.http import Request, proxy_event
from docllm.serving.exceptions import EngineBusyError, EngineUnavailableError, NoModelDeployedError
from tests.unit.answers.fakes import FakeEngine
from tests.unit.api.fakes import (
    FAMILY,
    GOOD,
    MODEL,
    QUESTION,
    Failing,
    Platform,
    ask_lambda,
    isolate_ask,
    tokenizer_model,
)
from tests.unit.api.test_error_responses import HANDLER, Context

TARGET = {"Target": "local"}
VERSIONED = {"Target": "local", "Family": FAMILY, "Version": MODEL}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_ask(monkeypatch)


def use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, engine: Any = None, *, tokenizer: bool = True) -> Platform:
    p = Platform(
        tmp_path, engine if engine is not None else FakeEngine(GOOD), tokenizer=tokenizer_model() if tokenizer else None
    )
    monkeypatch.setattr(routes, "build_platform", lambda: p)
    return p


def post(body: Any) -> int:
    return int(ask_lambda(body)["statusCode"])


def both(p: Platform, name: str) -> tuple[list[float], list[float]]:
    """The values of ``name`` under ``{Target}`` only, and under the versioned set."""
    target_only = [pt.value for pt in p.points(name) if dict(pt.dimensions).keys() == {"Target", "service"}]
    return target_only, p.values(name, **VERSIONED)


def test_an_answer_emits_every_answer_metric_under_both_dimension_sets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p = use(monkeypatch, tmp_path)
    assert post({"question": QUESTION}) == 200
    expected = {
        names.ASK_REQUESTS: 1,
        names.ASK_SERVER_ERRORS: 0,
        names.ASK_CLIENT_ERRORS: 0,
        names.ASK_UNGROUNDED: 0,
        names.ASK_ABSTAINED: 0,
        names.DRIFT_LOW_SCORE: 0,
    }
    for name, value in expected.items():
        assert both(p, name) == ([value], [value]), name
    for name in (names.ASK_LATENCY, names.ASK_RETRIEVAL_SCORE, names.ASK_TOKENS_PER_SECOND, names.DRIFT_OOV_RATE):
        target_only, versioned = both(p, name)
        assert len(target_only) == len(versioned) == 1 and target_only == versioned, name
    assert both(p, names.ASK_RETRIEVAL_SCORE)[0][0] > 0
    assert 0 < both(p, names.DRIFT_OOV_RATE)[0][0] < 100  # "How do I" is not in the toy vocabulary; "bucket" is
    assert p.points(names.ASK_TIME_TO_FIRST_TOKEN) == []  # not streamed
    units = {pt.name: pt.unit for n in names.UNITS for pt in p.points(n)}
    assert units[names.ASK_LATENCY] == "Milliseconds" and units[names.DRIFT_OOV_RATE] == "Percent"
    assert units[names.ASK_TOKENS_PER_SECOND] == "Count/Second"


def test_the_alarmed_metrics_are_high_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = use(monkeypatch, tmp_path)
    post({"question": QUESTION})
    for name in names.UNITS:
        for point in p.points(name):
            assert point.resolution == (1 if name in names.HIGH_RESOLUTION else 60), name
    assert {
        names.ASK_REQUESTS,
        names.ASK_SERVER_ERRORS,
        names.ASK_LATENCY,
        names.ASK_UNGROUNDED,
    } == names.HIGH_RESOLUTION


def test_an_uncovered_question_counts_as_an_abstention_under_the_floor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p = use(monkeypatch, tmp_path)
    assert post({"question": "How do I bake sourdough bread?"}) == 200
    assert both(p, names.ASK_ABSTAINED)[1] == [1]
    assert both(p, names.DRIFT_LOW_SCORE)[1] == [100]
    assert both(p, names.ASK_UNGROUNDED)[1] == [0]  # nothing was generated, nothing was ungrounded
    assert p.points(names.ASK_TOKENS_PER_SECOND) == []


def test_a_draft_with_an_invented_limit_is_counted_ungrounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = use(monkeypatch, tmp_path, FakeEngine("Objects can be up to 7 TB in a bucket."))
    assert post({"question": "What is the maximum size of an S3 object?"}) == 200
    assert both(p, names.ASK_UNGROUNDED) == ([1], [1])
    assert both(p, names.ASK_ABSTAINED) == ([1], [1])


@pytest.mark.parametrize(
    ("body", "service"),
    [
        ({"question": QUESTION}, "s3"),  # the best retrieved document's: s3/Versioning.md
        ({"question": "What is an IAM role?"}, "iam"),
        ({"question": "What is an IAM role?", "service": "iam"}, "iam"),  # the request's
    ],
)
def test_each_answer_counts_one_question_of_its_service_under_target_and_service_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: dict[str, Any], service: str
) -> None:
    p = use(monkeypatch, tmp_path)
    assert post(body) == 200
    (point,) = p.points(names.ASK_QUESTIONS)
    assert dict(point.dimensions) == {"Target": "local", "Service": service, "service": "docllm"}
    assert (point.value, point.unit, point.resolution) == (1, "Count", 60)


def test_the_request_service_wins_over_what_was_retrieved() -> None:
    from docllm.answers.models import Answer, RetrievedDocument

    doc = RetrievedDocument(doc_key="s3/a.md", version_id=None, title="a", score=2.0, coverage=1.0, chunk_ids=[])
    other = doc.model_copy(update={"doc_key": "iam/b.md", "score": 1.0})
    answer = Answer(
        question="q", answer="a", citations=[], grounded=True, unsupported=[], abstained=False,
        model_version=MODEL, latency_ms=1.0, retrieval=[doc, other],
    )  # fmt: skip
    assert ask_metrics.question_service("ec2", answer) == "ec2"
    assert ask_metrics.question_service(None, answer) == "s3"  # best first
    assert ask_metrics.question_service(None, answer.model_copy(update={"retrieval": []})) is None


@pytest.mark.parametrize("error", [EngineUnavailableError("refused"), RuntimeError("a bug")])
def test_a_server_error_is_counted_and_timed_for_the_one_version_serving(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception
) -> None:
    p = use(monkeypatch, tmp_path, Failing(error))
    p.state.put("endpoints", "local", {"target": "local", "model_version": MODEL, "family": FAMILY, "canary": None})
    assert post({"question": QUESTION}) in (500, 503)
    assert both(p, names.ASK_REQUESTS) == ([1], [1])
    assert both(p, names.ASK_SERVER_ERRORS) == ([1], [1])
    assert both(p, names.ASK_CLIENT_ERRORS) == ([0], [0])
    assert len(both(p, names.ASK_LATENCY)[1]) == 1
    assert p.points(names.ASK_ABSTAINED) == [] and p.points(names.DRIFT_OOV_RATE) == []


def test_a_failure_during_a_canary_split_is_not_pinned_on_either_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p = use(monkeypatch, tmp_path, Failing(EngineUnavailableError("refused")))
    canary = {"model_version": "tiny-s3-v2", "weight": 10}
    p.state.put("endpoints", "local", {"target": "local", "model_version": MODEL, "family": FAMILY, "canary": canary})
    assert post({"question": QUESTION}) == 503
    assert both(p, names.ASK_SERVER_ERRORS) == ([1], [])


def test_an_engine_error_that_names_its_version_is_counted_for_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    error = EngineUnavailableError("refused")
    error.model_version = MODEL  # type: ignore[attr-defined]
    p = use(monkeypatch, tmp_path, Failing(error))
    assert post({"question": QUESTION}) == 503
    assert both(p, names.ASK_SERVER_ERRORS) == ([1], [1])


def test_no_model_deployed_is_a_server_error_of_the_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = use(monkeypatch, tmp_path, Failing(NoModelDeployedError("nothing")))
    assert post({"question": QUESTION}) == 503
    assert both(p, names.ASK_SERVER_ERRORS) == ([1], [])
    assert both(p, names.ASK_REQUESTS) == ([1], [])


@pytest.mark.parametrize(
    ("body", "engine"),
    [
        ({"question": ""}, None),  # refused by validation, before the route
        (b"{not json", None),
        ({"question": QUESTION, "service": "nope"}, None),
        ({"question": QUESTION, "model": "tiny-s3-v0"}, None),
        ({"question": QUESTION, "pad": " " * 20_000}, None),  # 413
        ({"question": QUESTION}, Failing(EngineBusyError("queue full"))),  # 429
    ],
)
def test_client_errors_are_counted_as_such_and_not_timed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: Any, engine: Any
) -> None:
    p = use(monkeypatch, tmp_path, engine)
    status = post(body)
    assert 400 <= status < 500
    assert both(p, names.ASK_CLIENT_ERRORS)[0] == [1]
    assert both(p, names.ASK_SERVER_ERRORS)[0] == [0]
    assert both(p, names.ASK_REQUESTS)[0] == [1]
    assert p.points(names.ASK_LATENCY) == [] and p.points(names.ASK_ABSTAINED) == []
    assert p.points(names.ASK_QUESTIONS) == []


def test_other_routes_are_not_counted_as_questions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = use(monkeypatch, tmp_path)
    event = proxy_event("GET", "/v1/status", Request("GET", "/v1/status", {"host": "api"}, b"", "127.0.0.1"))
    HANDLER(event, Context())
    assert p.points(names.ASK_REQUESTS) == []


def test_without_a_readable_tokenizer_there_is_no_oov_rate_and_it_is_not_fetched_every_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p = use(monkeypatch, tmp_path, tokenizer=False)
    assert post({"question": QUESTION}) == 200
    assert post({"question": QUESTION}) == 200
    assert p.points(names.DRIFT_OOV_RATE) == []
    assert both(p, names.ASK_REQUESTS) == ([1, 1], [1, 1])
    assert p.objects.gets == 1


def test_the_tokenizer_is_read_once_per_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = use(monkeypatch, tmp_path)
    for _ in range(3):
        post({"question": QUESTION})
    assert len(both(p, names.DRIFT_OOV_RATE)[1]) == 3 and p.objects.gets == 1


def test_a_broken_metrics_sink_never_fails_the_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = use(monkeypatch, tmp_path)

    def refuse(*_a: Any, **_k: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(p.metrics, "put", refuse)
    assert post({"question": QUESTION}) == 200


def test_the_target_is_the_deploy_target_off_the_local_platform(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p = use(monkeypatch, tmp_path)
    p.local = False  # type: ignore[misc]
    p.settings = p.settings.model_copy(update={"deploy_target": "sagemaker"})
    metrics = ask_metrics.AskMetrics(p)
    assert metrics.target == "sagemaker"
    assert ask_metrics.AskMetrics(Platform(tmp_path / "other", FakeEngine())).target == "local"
