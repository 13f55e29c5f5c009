"""A per-caller token bucket for ``POST /v1/ask``: a question costs generation time, a search does not.

Each caller (an API key, an IAM principal, else a source address) gets ``burst`` questions at once and
``rate`` more per second after that. The state lives in the process: on the local platform the API
runs in one process, so the limit is exact; on AWS each Lambda execution environment keeps its own
buckets, so the limit there is API Gateway's route throttling (``ThrottlingRateLimit`` /
``ThrottlingBurstLimit`` on the HTTP API stage), and this bucket only stops one environment being
monopolised. docs/answers.md has the defaults and how to change them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from docllm.answers.exceptions import RateLimitedError

DEFAULT_RATE = 20.0
"""Questions per second per caller: above what the ``tiny`` model answers on two cores, so the engine's
own queue (429 when full) is the usual back-pressure, and this limit catches runaway clients."""
DEFAULT_BURST = 40
MAX_CALLERS = 10_000
"""Buckets kept; the fullest (idle longest) are dropped first, so unknown callers cannot grow memory."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by caller.

    Examples
    --------
    >>> now = [0.0]
    >>> limiter = RateLimiter(rate=1.0, burst=2, clock=lambda: now[0])
    >>> limiter.take("k"); limiter.take("k")
    >>> try:
    ...     limiter.take("k")
    ... except RateLimitedError as e:
    ...     print(round(e.retry_after_s, 1))
    1.0
    >>> now[0] = 1.0; limiter.take("k")
    """

    def __init__(
        self, *, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> None:
        """Spend one question of ``caller``'s allowance, or raise :class:`RateLimitedError`."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(caller)
            if bucket is None:
                if len(self._buckets) >= MAX_CALLERS:
                    self._evict(now)
                bucket = self._buckets[caller] = _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens < 1.0:
                raise RateLimitedError((1.0 - bucket.tokens) / self.rate)
            bucket.tokens -= 1.0

    def _evict(self, now: float) -> None:
        # A bucket idle long enough to be full again carries no state worth keeping.
        full_after = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_CALLERS:  # all busy: drop the oldest half
            for key, _ in sorted(self._buckets.items(), key=lambda kv: kv[1].updated)[: MAX_CALLERS // 2]:
                del self._buckets[key]
