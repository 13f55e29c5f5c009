"""EventBridge Scheduler expressions, and the schedules the local runtime reads from the template."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from docllm.exceptions import ConfigurationError
from docllm.runtime.schedules import parse_schedule
from docllm.runtime.template import read_wiring
from tests.conftest import REPO


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_rate_schedule_fires_every_period_from_its_start_and_skips_what_it_missed() -> None:
    s = parse_schedule("rate(5 minutes)")
    assert s.next_after(1000.0, started=1000.0) == 1300.0
    assert s.next_after(1300.0, started=1000.0) == 1600.0
    assert s.next_after(2000.0, started=1000.0) == 2200.0  # 1900 passed while busy: the next one, not a burst
    assert parse_schedule("rate(1 hour)").next_after(0.0, started=0.0) == 3600.0
    assert s.next_after(1000.0, started=1000.0, scale=0.01) == 1003.0


@pytest.mark.parametrize(
    ("expression", "now", "expected"),
    [
        ("cron(0/15 * * * ? *)", "2024-03-05T10:07:30", "2024-03-05T10:15:00"),
        ("cron(0 12 * * ? *)", "2024-03-05T12:00:00", "2024-03-06T12:00:00"),
        ("cron(30 8 ? * MON-FRI *)", "2024-03-08T09:00:00", "2024-03-11T08:30:00"),  # Friday -> Monday
        ("cron(0 0 1 JAN ? *)", "2024-03-05T00:00:00", "2025-01-01T00:00:00"),
        ("cron(0 6 ? * 1 *)", "2024-03-05T00:00:00", "2024-03-10T06:00:00"),  # 1 is Sunday, as AWS counts
        ("at(2030-01-02T03:04:05)", "2024-03-05T00:00:00", "2030-01-02T03:04:05"),
    ],
)
def test_cron_and_one_time_schedules_follow_the_clock(expression: str, now: str, expected: str) -> None:
    assert parse_schedule(expression).next_after(at(now), started=0.0) == at(expected)


def test_a_one_time_schedule_in_the_past_never_fires_and_time_zones_apply() -> None:
    assert parse_schedule("at(2020-01-01T00:00:00)").next_after(at("2024-01-01T00:00:00"), started=0.0) is None
    paris = parse_schedule("cron(0 9 * * ? *)", "Europe/Paris")
    assert paris.next_after(at("2024-07-01T00:00:00"), started=0.0) == at("2024-07-01T07:00:00")


@pytest.mark.parametrize(
    "expression",
    ["rate(0 minutes)", "rate(5 weeks)", "cron(* * * * *)", "cron(0 0 * * * *)", "cron(0 0 L * ? *)", "every 5m"],
)
def test_malformed_or_unsupported_expressions_are_refused_by_name(expression: str) -> None:
    with pytest.raises(ConfigurationError, match="schedule"):
        parse_schedule(expression)


def test_the_runtime_reads_the_templates_scheduler_schedules_with_their_input() -> None:
    (canary,) = [s for s in read_wiring(REPO / "template.yaml").schedules if s.target == "CanaryFunction"]
    assert canary.expression == "rate(5 minutes)"
    assert canary.input is not None and '"Canary Run Requested"' in canary.input
    fixture = read_wiring(REPO / "tests" / "fixtures" / "monitoring" / "template.yaml")
    (tick,) = fixture.schedules
    assert (tick.target, tick.max_retries) == ("TickFunction", 0)
