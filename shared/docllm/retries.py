"""Retrying one transient call in place.

A stage that reads thousands of objects in one invocation (a dataset build) must not start over
because one read was throttled: the queue's redelivery retries the *whole* invocation, which at
a few percent of failed reads would never succeed. Retrying the single call is cheap and
harmless for reads and for idempotent writes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from docllm.exceptions import TransientError

T = TypeVar("T")


def retry_transient(
    call: Callable[..., T],
    *args: Any,
    attempts: int = 5,
    base_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call(*args)``; on a :class:`TransientError` call again after an exponential backoff with full
    jitter (``base_s``·2ⁿ at most), ``attempts`` calls in all; the last error is raised.

    >>> calls = []
    >>> def flaky() -> str:
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise TransientError("throttled")
    ...     return "ok"
    >>> retry_transient(flaky, sleep=lambda s: None), len(calls)
    ('ok', 3)
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for n in range(attempts - 1):
        try:
            return call(*args)
        except TransientError:
            sleep(random.uniform(0, base_s * 2**n))
    return call(*args)
