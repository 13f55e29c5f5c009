"""The transactional outbox: a state change and its events are committed together, and the
events reach the bus even when the first publish fails."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from docllm.bootstrap import Platform
from docllm.events.contracts import StageFailed
from docllm.events.envelope import BusEvent
from docllm.exceptions import ConflictError, TransientError
from docllm.ports.bus import EventBus
from docllm.ports.state import Put
from docllm.service_layer.outbox import commit, pending, relay, relay_entry
from docllm.settings import Settings
from tests.conftest import REPO


class RecordingBus(EventBus):
    def __init__(self) -> None:
        self.down = False
        self.published: list[BusEvent] = []

    def publish(self, events: Sequence[BusEvent]) -> None:
        if self.down:
            raise TransientError("ThrottlingException")
        self.published.extend(events)


@pytest.fixture
def p(tmp_path: Path) -> Platform:
    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path)}),
        template=REPO / "template.yaml",
    )
    platform.__dict__["bus"] = RecordingBus()
    return platform


def failed(n: int) -> StageFailed:
    return StageFailed(stage="train", subject=f"job-{n}", reason="x")


def test_a_commit_publishes_its_events_and_leaves_nothing_pending(p: Platform) -> None:
    commit(p, [Put("jobs", "j", {"status": "Failed"})], [failed(1), failed(2)])
    assert p.state.get("jobs", "j") == {"status": "Failed"}
    assert [e.detail["subject"] for e in p.bus.published] == ["job-1", "job-2"]  # type: ignore[attr-defined]
    assert pending(p) == []


def test_a_refused_publish_keeps_the_state_change_and_the_relay_delivers_it_later(p: Platform) -> None:
    bus: RecordingBus = p.bus  # type: ignore[assignment]
    bus.down = True
    commit(p, [Put("jobs", "j", {"status": "Failed"})], [failed(1)])
    assert p.state.get("jobs", "j") == {"status": "Failed"}
    assert len(pending(p)) == 1
    assert relay(p, min_age_s=60) == 0  # younger than the grace period: left to the inline attempt
    with pytest.raises(TransientError):
        relay(p)
    bus.down = False
    assert relay(p) == 1
    assert [e.detail["subject"] for e in bus.published] == ["job-1"]
    assert pending(p) == []


def test_a_failed_condition_commits_neither_the_change_nor_its_events(p: Platform) -> None:
    p.state.put("jobs", "j", {"status": "InProgress"})
    with pytest.raises(ConflictError):
        commit(p, [Put("jobs", "j", {"status": "x"}, if_absent=True)], [failed(1)])
    assert pending(p) == [] and p.bus.published == []  # type: ignore[attr-defined]


def test_the_stream_relay_publishes_an_entry_once_and_skips_one_already_published(p: Platform) -> None:
    bus: RecordingBus = p.bus  # type: ignore[assignment]
    bus.down = True
    commit(p, [], [failed(1)])
    ((key, _),) = pending(p)
    bus.down = False
    assert relay_entry(p, key) is True
    assert relay_entry(p, key) is False
    assert len(bus.published) == 1


def test_events_keep_their_order_through_the_relay(p: Platform) -> None:
    bus: RecordingBus = p.bus  # type: ignore[assignment]
    bus.down = True
    for n in range(15):
        commit(p, [], [failed(n)])
    bus.down = False
    assert relay(p) == 15
    assert [e.detail["subject"] for e in bus.published] == [f"job-{n}" for n in range(15)]
