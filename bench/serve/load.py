"""Decode speed over HTTP on an OpenAI-compatible server (ours or vLLM), from the client's side.

Each request streams ``/v1/completions`` with ``stream_options.include_usage`` so the client sees
the first token arrive (time to first token) and the server's own count of generated tokens (a
text delta may carry several tokens, or none while a character is half decoded). Prompts go as
token ids, so every engine prefills exactly the same tokens.

Decode tokens/s of one request is ``(tokens - 1) / (last event - first token)``: the first token
is the prefill's. The aggregate of ``n`` concurrent requests is every token generated divided by
the wall time from the first request sent to the last one finished.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class StreamResult:
    start: float
    first_token: float
    end: float
    tokens: int

    @property
    def ttft_s(self) -> float:
        return self.first_token - self.start

    @property
    def decode_tps(self) -> float:
        span = self.end - self.first_token
        return (self.tokens - 1) / span if span > 0 and self.tokens > 1 else float("nan")


def stream_completion(url: str, body: dict[str, Any], timeout_s: float = 600) -> StreamResult:
    """POST a streamed completion; time its first token and its end."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s)
    payload = json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}}).encode()
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", body=payload, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{url} answered {resp.status}: {resp.read()[:300]!r}")
    first = 0.0
    tokens = 0
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        event = json.loads(data)
        if event.get("usage"):
            tokens = int(event["usage"]["completion_tokens"])
        if not first and any(c.get("text") for c in event.get("choices") or []):
            first = time.perf_counter()
    end = time.perf_counter()
    conn.close()
    return StreamResult(start, first or end, end, tokens)


def _burst(url: str, body: dict[str, Any], n: int) -> tuple[list[StreamResult], float]:
    """``n`` identical requests at once: their results and the wall time of the whole burst."""
    results: list[StreamResult] = []
    lock = threading.Lock()

    def one() -> None:
        r = stream_completion(url, body)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(results) != n:
        raise RuntimeError(f"{n - len(results)} of {n} concurrent requests failed")
    return results, max(r.end for r in results) - t0


@dataclass(frozen=True)
class DecodeFigures:
    ttft_ms: float
    batch1_tps: float
    concurrent_tps: float
    tokens_per_request: float


def measure(
    url: str,
    model: str,
    prompt_ids: list[int],
    *,
    max_tokens: int,
    concurrency: int,
    repeats: int,
    extra: dict[str, Any],
) -> DecodeFigures:
    """Median over ``repeats`` of batch-1 runs and of ``concurrency``-wide bursts (after one warm-up)."""
    body = {"model": model, "prompt": prompt_ids, "max_tokens": max_tokens, "temperature": 0.0, **extra}
    stream_completion(url, body)  # warm-up: first-call allocations, lazy compilation
    singles = [stream_completion(url, body) for _ in range(repeats)]
    bursts: list[float] = []
    counts: list[int] = [r.tokens for r in singles]
    for _ in range(repeats):
        results, wall = _burst(url, body, concurrency)
        bursts.append(sum(r.tokens for r in results) / wall)
        counts += [r.tokens for r in results]
    return DecodeFigures(
        ttft_ms=statistics.median(r.ttft_s for r in singles) * 1000,
        batch1_tps=statistics.median(r.decode_tps for r in singles),
        concurrent_tps=statistics.median(bursts),
        tokens_per_request=statistics.mean(counts),
    )
