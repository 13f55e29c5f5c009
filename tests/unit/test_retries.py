"""retry_transient: one transient call retried in place, anything else raised at once."""

from __future__ import annotations

import pytest

from docllm.exceptions import PermanentError, TransientError
from docllm.retries import retry_transient


def flaky(failures: int, error: Exception) -> tuple[list[int], object]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "ok"

    return calls, call


def test_a_call_that_fails_transiently_a_few_times_succeeds_in_place() -> None:
    calls, call = flaky(4, TransientError("throttled"))
    sleeps: list[float] = []
    assert retry_transient(call, attempts=5, base_s=0.1, sleep=sleeps.append) == "ok"  # type: ignore[arg-type]
    assert len(calls) == 5 and len(sleeps) == 4
    assert all(0 <= s <= 0.1 * 2**n for n, s in enumerate(sleeps))


def test_the_last_transient_error_is_raised_after_every_attempt() -> None:
    calls, call = flaky(9, TransientError("still throttled"))
    with pytest.raises(TransientError, match="still throttled"):
        retry_transient(call, attempts=3, sleep=lambda _s: None)  # type: ignore[arg-type]
    assert len(calls) == 3


def test_a_permanent_error_is_not_retried() -> None:
    calls, call = flaky(1, PermanentError("bad input"))
    with pytest.raises(PermanentError):
        retry_transient(call, sleep=lambda _s: None)  # type: ignore[arg-type]
    assert len(calls) == 1
