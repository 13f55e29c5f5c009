"""Retrieval over HTTP on the local platform: index build, latency, load and freshness.

The platform runs as ``docllm up`` in a child process, so the load client in
this process does not share a GIL with the server it measures. Documents go in
the way a user's do: uploaded to the raw bucket through the object store, from
where events drive ingest and indexing. Everything is measured against
``GET /v1/search`` on 127.0.0.1.

Run on its own against an already-built data directory is not supported on
purpose: each run builds the index from the corpus so the build time is
measured too. ``bench.search.run`` calls :func:`bench_http`.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.search.corpus import REPO, Document
from bench.search.load import run_load
from docllm.bootstrap import Platform, reset_platforms
from docllm.search.evaluation import DEPTH, Question, distinct_docs
from docllm.settings import Settings

TERMINAL = ("processed", "duplicate", "quarantined")
FRESH_POLL_S = 0.02
STABLE_S = 10.0


@dataclass(frozen=True)
class HttpSettings:
    """Knobs of the HTTP part of the benchmark."""

    rate: float = 200.0
    """Requests per second of the load run."""
    duration_s: float = 60.0
    """Length of the load run."""
    fresh_repeats: int = 5
    """How many new documents the freshness probe uploads, one after another."""
    build_timeout_s: float = 1800.0
    """Give up waiting for the platform to index the corpus after this long."""
    fresh_timeout_s: float = 30.0
    """Give up on one freshness probe after this long (reported as a miss)."""
    docllm: Path | None = None
    """The ``docllm`` executable to start (default: the one beside this Python); lets a patched server be compared."""


class PlatformProcess:
    """``docllm up`` in a child process, with its URL and API key once it answers."""

    def __init__(self, data_dir: Path, docllm: Path | None = None) -> None:
        self.data_dir = data_dir
        self.docllm = docllm or Path(sys.executable).parent / "docllm"
        self.log_path = data_dir.parent / f"{data_dir.name}-up.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.api_url = ""
        self.api_key = ""

    def start(self, timeout_s: float = 60.0) -> None:
        cmd = [str(self.docllm), "--data-dir", str(self.data_dir), "up", "--port", "0"]
        env = dict(os.environ, POWERTOOLS_LOG_LEVEL="WARNING")
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        runtime_file = self.data_dir / "runtime.json"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"docllm up exited with {self._proc.returncode}; see {self.log_path}")
            if runtime_file.exists():
                info = json.loads(runtime_file.read_text(encoding="utf-8"))
                try:
                    if httpx.get(f"{info['api_url']}/_local/health", timeout=1.0).status_code == 200:
                        self.api_url = info["api_url"]
                        self.api_key = (self.data_dir / "api-key").read_text(encoding="utf-8").strip()
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise TimeoutError(f"docllm up did not answer within {timeout_s:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


@contextmanager
def running_platform(data_dir: Path, docllm: Path | None = None) -> Iterator[tuple[PlatformProcess, Platform]]:
    """The child platform, and a :class:`Platform` in this process over the same data directory."""
    proc = PlatformProcess(data_dir, docllm)
    proc.start()
    try:
        # The same construction ``docllm ingest`` uses to upload to a running platform.
        env = dict(os.environ, DOCLLM_BACKEND="local", DOCLLM_DATA_DIR=str(data_dir))
        env["DOCLLM_TEMPLATE"] = str(REPO / "template.yaml")
        reset_platforms()
        yield proc, Platform(Settings.from_env(env), template=REPO / "template.yaml")
    finally:
        proc.stop()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def upload_and_wait(
    platform: Platform,
    client: httpx.Client,
    docs: list[Document],
    timeout_s: float,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Upload ``docs`` to the raw bucket, then wait until each is terminal and the index holds every processed one."""
    bucket = platform.settings.raw_bucket
    for doc in docs:
        platform.objects.put_file(bucket, doc.doc_key, doc.path, metadata={"service": doc.service})
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    # A processed document whose indexing ends in the DLQ never shows up in the index, so "indexed ==
    # processed" may never come: done is every document terminal and the index count still for STABLE_S.
    last: tuple[int, float] = (-1, time.monotonic())
    while time.monotonic() < deadline:
        status = client.get("/v1/status").json()
        counts: dict[str, int] = status.get("documents", {})
        done = sum(counts.get(s, 0) for s in TERMINAL)
        indexed = int(status.get("indexed_documents", 0))
        if progress is not None:
            progress(done, len(docs))
        if indexed != last[0]:
            last = (indexed, time.monotonic())
        if done >= len(docs) and (indexed >= counts.get("processed", 0) or time.monotonic() - last[1] >= STABLE_S):
            return status
        time.sleep(0.25)
    raise TimeoutError(f"the platform had not indexed {len(docs)} documents after {timeout_s:.0f}s: {status}")


def sequential(client: httpx.Client, questions: list[Question], passes: int = 2) -> dict[str, float]:
    """One request at a time over a kept-alive connection: latency without queueing, and quality over HTTP.

    Quality is read from one untimed pass at ``k=50`` (the depth the in-process engines are scored at);
    latency from ``passes`` timed passes at the API's default ``k=10``, the size of a normal response.
    """
    ranks: list[int | None] = []
    for q in questions:
        response = client.get("/v1/search", params={"q": q.question, "k": "50"})
        response.raise_for_status()
        docs = distinct_docs([h["doc_key"] for h in response.json()["hits"]], DEPTH)
        expected = set(q.expected_doc_keys)
        ranks.append(next((i + 1 for i, d in enumerate(docs) if d in expected), None))
    latencies: list[float] = []
    for _ in range(passes):
        for q in questions:
            start = time.perf_counter()
            client.get("/v1/search", params={"q": q.question}).raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000.0)
    n = len(questions)
    return {
        "http_recall@1": sum(1 for r in ranks if r == 1) / n,
        "http_recall@10": sum(1 for r in ranks if r is not None) / n,
        "http_p50_ms": _percentile(latencies, 0.5),
        "http_p99_ms": _percentile(latencies, 0.99),
    }


def freshness(platform: Platform, client: httpx.Client, repeats: int, timeout_s: float) -> list[float]:
    """Seconds from uploading a new small document until ``/v1/search`` returns it, per repeat (inf: never)."""
    out: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            # A made-up word nothing else in the corpus contains, so the first hit can only be the new document.
            marker = f"zq{uuid.uuid4().hex[:10]}"
            path = Path(tmp) / f"fresh-{i}.md"
            path.write_text(
                f"# Freshness probe {i}\n\n## Marker\n\nThis page mentions {marker} so the benchmark can find it.\n",
                encoding="utf-8",
            )
            key = f"freshness/{marker}.md"
            start = time.perf_counter()
            platform.objects.put_file(platform.settings.raw_bucket, key, path, metadata={"service": "freshness"})
            elapsed = float("inf")
            while time.perf_counter() - start < timeout_s:
                hits = client.get("/v1/search", params={"q": marker, "k": "1"}).json().get("hits", [])
                if hits and hits[0]["doc_key"] == key:
                    elapsed = time.perf_counter() - start
                    break
                time.sleep(FRESH_POLL_S)
            out.append(elapsed)
    return out


def bench_http(
    docs: list[Document],
    questions: list[Question],
    settings: HttpSettings,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Build the index through the platform, then measure latency, load and freshness over HTTP."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_platform(Path(tmp) / "data", settings.docllm) as (proc, platform),
    ):
        headers = {"Authorization": f"Bearer {proc.api_key}"}
        with httpx.Client(base_url=proc.api_url, headers=headers, timeout=30.0) as client:
            start = time.perf_counter()
            status = upload_and_wait(
                platform,
                client,
                docs,
                settings.build_timeout_s,
                None if progress is None else (lambda done, total: progress("indexing", done, total)),
            )
            build_s = time.perf_counter() - start
            client.get("/v1/search", params={"q": "warm up"})  # the scorer loads on the first search
            result: dict[str, Any] = {"platform_build_s": build_s, **sequential(client, questions)}
            load = run_load(
                proc.api_url,
                proc.api_key,
                settings.rate,
                settings.duration_s,
                [q.question for q in questions],
                path="/v1/search",
            )
            fresh = freshness(platform, client, settings.fresh_repeats, settings.fresh_timeout_s)
    result.update(
        {
            "load_rate_rps": settings.rate,
            "load_duration_s": settings.duration_s,
            "load_throughput_rps": load.throughput_rps,
            "load_p50_ms": load.p50_ms,
            "load_p99_ms": load.p99_ms,
            "load_errors": float(load.errors),
            "fresh_median_s": statistics.median(fresh),
            "fresh_max_s": max(fresh),
        }
    )
    result["_detail"] = {
        "indexed_documents": status.get("indexed_documents"),
        "document_status": status.get("documents"),
        "load_status_counts": load.status_counts,
        "freshness_s": fresh,
    }
    return result
