"""Bounded HTTP load client for the search API (127.0.0.1 only).

Sends ``GET {base_url}/v1/search?q=...`` at a fixed rate for a fixed time
(open loop: a slow server does not slow the sender down, so latency under
load is measured honestly), at most ``max_in_flight`` requests at once, and
reports throughput, latency p50/p99 and errors.

Run against a server the lead started::

    .venv/bin/python -m bench.search.load http://127.0.0.1:8080 --rate 50 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import httpx

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class LoadReport:
    """What a load run measured."""

    requests: int
    ok: int
    errors: int
    duration_s: float
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    status_counts: dict[str, int] = field(default_factory=dict)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _run(
    base_url: str,
    api_key: str | None,
    rate: float,
    duration_s: float,
    queries: list[str],
    max_in_flight: int,
    path: str,
) -> LoadReport:
    headers = {"x-api-key": api_key} if api_key else {}
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    gate = asyncio.Semaphore(max_in_flight)
    total = max(1, int(rate * duration_s))

    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10.0) as client:

        async def one(i: int) -> None:
            async with gate:
                start = time.perf_counter()
                try:
                    response = await client.get(path, params={"q": queries[i % len(queries)]})
                    key = str(response.status_code)
                    if response.is_success:
                        latencies.append((time.perf_counter() - start) * 1000.0)
                except httpx.HTTPError as e:
                    key = type(e).__name__
                statuses[key] = statuses.get(key, 0) + 1

        began = time.perf_counter()
        tasks = []
        for i in range(total):
            # Open loop: request i leaves at i / rate whatever happened before.
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    ok = len(latencies)
    return LoadReport(
        requests=total,
        ok=ok,
        errors=total - ok,
        duration_s=elapsed,
        throughput_rps=ok / elapsed if elapsed else 0.0,
        p50_ms=_percentile(latencies, 0.5),
        p99_ms=_percentile(latencies, 0.99),
        status_counts=statuses,
    )


def run_load(
    base_url: str,
    api_key: str | None,
    rate: float,
    duration_s: float,
    queries: list[str],
    *,
    max_in_flight: int = 64,
    path: str = "/v1/search",
) -> LoadReport:
    """Send ``rate * duration_s`` searches to ``base_url`` (loopback only) and report.

    Examples
    --------
    >>> run_load("http://example.com", None, 1, 1, ["q"])
    Traceback (most recent call last):
    ...
    ValueError: load tests only target 127.0.0.1/localhost, not 'example.com'
    """
    host = urlsplit(base_url).hostname or ""
    if host not in _LOCAL_HOSTS:
        raise ValueError(f"load tests only target 127.0.0.1/localhost, not {host!r}")
    if rate <= 0 or duration_s <= 0 or not queries:
        raise ValueError("rate and duration must be positive and queries non-empty")
    return asyncio.run(_run(base_url, api_key, rate, duration_s, queries, max_in_flight, path))


def main() -> None:
    from bench.search.run import DEVSET
    from docllm.search.evaluation import load_question_file

    parser = argparse.ArgumentParser(description="bounded HTTP load on the search API")
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:8080 (loopback only)")
    parser.add_argument("--api-key", default=None, help="sent as x-api-key")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--path", default="/v1/search", help="search route")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()
    queries = [q.question for q in load_question_file(DEVSET)]
    report = run_load(args.base_url, args.api_key, args.rate, args.duration, queries, path=args.path)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        for k, v in asdict(report).items():
            print(f"{k:<16} {v}")


if __name__ == "__main__":
    main()
