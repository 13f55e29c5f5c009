"""When a stale family's pipeline starts (pure: every time is given, nothing is read).

A family starts when it is stale (documents matching its filter changed since its last run began)
and either

* **the debounce lets it**: at least ``min_documents`` documents or ``min_tokens`` tokens changed,
  nothing changed for ``settle_minutes`` (more changes may be on their way), and its last run
  started at least ``min_interval_hours`` ago; or
* **its schedule is due**: ``retrain.schedule`` (``rate(…)``) has passed since its last run started
  (or since the stage first saw the family), whatever the thresholds.

A family with no changes never starts, whatever its schedule; nor does one whose run is in progress.

>>> from docllm.training.families import RetrainPolicy
>>> from docllm.pipelines.records import Staleness, StaleChange
>>> s = Staleness(); s.add("s3/a.md", StaleChange(change="added", tokens=100, at="2024-01-01T00:00:00+00:00"))
>>> p = RetrainPolicy(min_documents=1, settle_minutes=10, min_interval_hours=0)
>>> decide(p, s, now=parse_time("2024-01-01T00:05:00+00:00"), anchor=None, running=False).start
False
>>> decide(p, s, now=parse_time("2024-01-01T00:10:00+00:00"), anchor=None, running=False).start
True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from docllm.pipelines.records import Staleness, Trigger, parse_time

if TYPE_CHECKING:
    from docllm.training.families import RetrainPolicy


@dataclass(frozen=True)
class Decision:
    """Whether to start now, why (or why not), and when the family may start next."""

    start: bool
    reason: str
    trigger: Trigger | None = None
    #: When the debounce lets the family start (None: not before more changes arrive, or not stale).
    next_eligible_at: datetime | None = None
    #: When its schedule is next due (None: no schedule).
    next_scheduled_at: datetime | None = None


def rate_seconds(expression: str) -> float:
    """Seconds of a ``rate(N unit)`` expression (the form ``RetrainPolicy.schedule`` accepts)."""
    from docllm.runtime.schedules import parse_schedule

    schedule = parse_schedule(expression)
    if schedule.rate_s is None:
        raise ValueError(f"{expression!r} is not a rate expression")
    return schedule.rate_s


def thresholds_met(policy: RetrainPolicy, staleness: Staleness) -> bool:
    """Enough changed: ``min_documents`` documents, or ``min_tokens`` tokens when set."""
    if staleness.count >= policy.min_documents:
        return True
    return policy.min_tokens is not None and staleness.tokens >= policy.min_tokens


def decide(
    policy: RetrainPolicy,
    staleness: Staleness,
    *,
    now: datetime,
    anchor: datetime | None,
    running: bool,
    last_run_started_at: datetime | None = None,
) -> Decision:
    """Whether the family starts a run at ``now``.

    ``anchor``: when the schedule counts from (the last run's start, else when the stage first saw the
    family); ``last_run_started_at``: the last run's start, for ``min_interval_hours``.
    """
    next_scheduled = None
    if policy.schedule and anchor is not None:
        next_scheduled = anchor + timedelta(seconds=rate_seconds(policy.schedule))
    if not staleness.stale:
        return Decision(False, "not stale: no matching document changed", next_scheduled_at=next_scheduled)
    if running:
        return Decision(False, "a run is in progress", next_scheduled_at=next_scheduled)
    eligible = None
    if thresholds_met(policy, staleness):
        last_change = parse_time(staleness.last_change_at or staleness.first_change_at or now.isoformat())
        eligible = last_change + timedelta(minutes=policy.settle_minutes)
        if last_run_started_at is not None:
            eligible = max(eligible, last_run_started_at + timedelta(hours=policy.min_interval_hours))
        if now >= eligible:
            return Decision(True, staleness.reasons(), "change", eligible, next_scheduled)
    if next_scheduled is not None and now >= next_scheduled:
        return Decision(
            True, f"schedule {policy.schedule} due; {staleness.reasons()}", "schedule", eligible, next_scheduled
        )
    if eligible is None:
        wanted = f"{policy.min_documents} documents" + (f" or {policy.min_tokens} tokens" if policy.min_tokens else "")
        why = f"below the thresholds ({staleness.count} documents, ~{staleness.tokens} tokens of {wanted})"
    else:
        why = f"debounce: eligible at {eligible.isoformat()}"
    return Decision(False, why, None, eligible, next_scheduled)
