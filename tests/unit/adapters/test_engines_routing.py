"""Weighted routing of the local inference client during a canary: the share each version takes, the
version each answer names, and where a request goes when the engine it drew is gone."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docllm.adapters.local.inference import ENDPOINTS_PK, LOCAL_SK, LocalEngineClient, route
from docllm.adapters.local.state import SqliteStateStore
from docllm.ports.inference import GenerationParams
from tests.integration.inference.test_local_engine_client import FakeEngine, dead_url


@pytest.fixture
def engines() -> Iterator[tuple[FakeEngine, FakeEngine]]:
    stable, canary = FakeEngine("v1"), FakeEngine("v2")
    yield stable, canary
    stable.close()
    canary.close()


@pytest.fixture
def state(tmp_path: Path) -> SqliteStateStore:
    return SqliteStateStore(tmp_path / "state.sqlite3")


def split(stable_url: str, canary_url: str, weight: float) -> dict[str, Any]:
    return {
        "url": stable_url,
        "model_version": "v1",
        "canary": {"url": canary_url, "model_version": "v2", "weight": weight, "bake_until": "2999-01-01T00:00:00"},
    }


@pytest.mark.parametrize("weight", [0.1, 0.25, 0.5])
def test_the_canary_takes_its_weight_of_the_requests(weight: float) -> None:
    rng = random.Random(7)
    n = 20_000
    picks = Counter(route(split("http://a", "http://b", weight), rng.random())["model_version"] for _ in range(n))
    # Binomial: 4 standard deviations of the share over n draws.
    tolerance = 4 * (weight * (1 - weight) / n) ** 0.5
    assert abs(picks["v2"] / n - weight) < tolerance
    assert picks["v1"] + picks["v2"] == n


def test_no_canary_or_a_zero_weight_sends_everything_to_the_stable_engine() -> None:
    assert route({"url": "http://a", "model_version": "v1"}, 0.0)["model_version"] == "v1"
    assert route({"url": "http://a", "model_version": "v1", "canary": None}, 0.0)["model_version"] == "v1"
    assert route(split("http://a", "http://b", 0.0), 0.0)["model_version"] == "v1"


def test_each_answer_names_the_version_that_generated_it(
    engines: tuple[FakeEngine, FakeEngine], state: SqliteStateStore
) -> None:
    stable, canary = engines
    state.put(ENDPOINTS_PK, LOCAL_SK, split(stable.url, canary.url, 0.1))
    client = LocalEngineClient(state, rng=random.Random(3))
    served = Counter(client.generate("x", GenerationParams(max_tokens=2)).model for _ in range(300))
    assert set(served) == {"v1", "v2"}
    assert 10 <= served["v2"] <= 60  # 10% of 300, loosely: the statistics are tested above
    # Each engine was asked for its own version (the engine 404s another model name).
    assert {body["model"] for _, _, body in canary.requests if body} == {"v2"}
    assert {body["model"] for _, _, body in stable.requests if body} == {"v1"}
    # A stream carries the version that streams it.
    versions = set()
    for _ in range(60):
        stream = client.stream("x", GenerationParams(max_tokens=2))
        assert "".join(stream) == "Versioning keeps every version"
        versions.add(stream.model)  # type: ignore[attr-defined]
    assert versions == {"v1", "v2"}


def test_info_is_the_stable_versions(engines: tuple[FakeEngine, FakeEngine], state: SqliteStateStore) -> None:
    stable, canary = engines
    state.put(ENDPOINTS_PK, LOCAL_SK, split(stable.url, canary.url, 0.99))
    assert LocalEngineClient(state, rng=random.Random(0)).info().model == "v1"
    assert canary.requests == []


def test_a_request_drawn_for_a_canary_that_is_gone_is_retried_on_the_stable_engine(
    engines: tuple[FakeEngine, FakeEngine], state: SqliteStateStore
) -> None:
    stable, _ = engines
    # The canary was aborted (its engine stopped accepting) after this request read the record.
    state.put(ENDPOINTS_PK, LOCAL_SK, split(stable.url, dead_url(), 1.0))
    client = LocalEngineClient(state, rng=random.Random(0))
    assert client.generate("x", GenerationParams()).model == "v1"
    assert len(stable.requests) == 1
