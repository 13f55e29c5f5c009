"""Each caller gets a burst of questions, then a steady rate."""

from __future__ import annotations

import pytest

from docllm.answers.exceptions import RateLimitedError
from docllm.answers.limits import MAX_CALLERS, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_caller_over_its_burst_is_told_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimitedError) as e:
        limiter.take("a")
    assert e.value.retry_after_s == pytest.approx(0.5)
    clock.now = 0.5
    limiter.take("a")


def test_callers_have_separate_allowances() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    limiter.take("a")
    limiter.take("b")
    with pytest.raises(RateLimitedError):
        limiter.take("a")


def test_the_allowance_never_exceeds_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    clock.now = 1000.0
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(RateLimitedError):
        limiter.take("a")


def test_many_callers_do_not_grow_memory_without_bound() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    for i in range(MAX_CALLERS + 10):
        limiter.take(str(i))
    assert len(limiter._buckets) <= MAX_CALLERS


def test_a_nonsense_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=0, burst=1)
