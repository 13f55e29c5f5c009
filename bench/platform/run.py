"""The whole corpus through the local platform: upload → events → chunks → index.

Starts ``docllm up`` as its own process (as a user would), uploads every file of
``../shared/corpus/awsdocs/`` the way ``docllm ingest DIR --service S`` does,
and times until every document is processed or quarantined and indexed. Then
accounts for every file: a document the platform lost would show up as
"unaccounted". Goal (issue 3): under 2 minutes, zero unaccounted.

Run:  .venv/bin/python -m bench.platform [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from docllm.bootstrap import Platform
from docllm.cli.common import progress_bars
from docllm.records import DOCS_PK
from docllm.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "awsdocs"
TERMINAL = {"processed", "duplicate", "quarantined"}


def start(data: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(data), "up", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while not (data / "runtime.json").exists():
        if proc.poll() is not None:
            raise SystemExit("docllm up exited")
        time.sleep(0.1)
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two services only")
    parser.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if not CORPUS.is_dir():
        print("../shared/corpus/awsdocs is not present; nothing to measure", file=sys.stderr)
        return 0
    services = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
    if args.quick:
        services = services[:2]
    files = [
        (s, f, f.relative_to(CORPUS / s / "doc_source"))
        for s in services
        for f in sorted((CORPUS / s / "doc_source").glob("*.md"))
    ]
    total_bytes = sum(f.stat().st_size for _, f, _ in files)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        proc = start(data)
        p = Platform(
            Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data)}),
            template=REPO / "template.yaml",
        )
        bucket = p.settings.raw_bucket
        try:
            t0 = time.perf_counter()
            with progress_bars(disable=args.json) as progress:
                up = progress.add_task("upload", total=len(files))
                done = progress.add_task("processed", total=len(files))
                idx = progress.add_task("indexed", total=len(files))
                for service, path, rel in files:
                    p.objects.put_file(bucket, f"{service}/{rel.as_posix()}", path, metadata={"service": service})
                    progress.advance(up)
                t_upload = time.perf_counter() - t0
                t_processed = t_indexed = None
                while time.perf_counter() - t0 < args.timeout:
                    records = dict(p.state.query(DOCS_PK))
                    terminal = sum(r.get("status") in TERMINAL for r in records.values())
                    with_chunks = {k for k, r in records.items() if r.get("chunk_count")}
                    indexed = len(with_chunks & set(p.search.document_versions()))
                    progress.update(done, completed=terminal)
                    progress.update(idx, completed=indexed + (len(records) - len(with_chunks)))
                    if t_processed is None and terminal == len(files):
                        t_processed = time.perf_counter() - t0
                    if t_processed is not None and indexed == len(with_chunks):
                        t_indexed = time.perf_counter() - t0
                        break
                    time.sleep(0.25)
            records = dict(p.state.query(DOCS_PK))
            expected = {f"{s}/{rel.as_posix()}" for s, _, rel in files}
            unaccounted = sorted(k for k in expected if records.get(k, {}).get("status") not in TERMINAL)
            statuses: dict[str, int] = {}
            for r in records.values():
                statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
            dead = sum(p.local_queue.stats(q).dead for q in p.local_queue.queues)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
    result = {
        "machine": f"{host.processor() or host.machine()}, {os.cpu_count()} cores, Python {host.python_version()}",
        "services": services,
        "files": len(files),
        "megabytes": round(total_bytes / 1e6, 2),
        "upload_s": round(t_upload, 2),
        "all_processed_s": round(t_processed, 2) if t_processed else None,
        "all_indexed_s": round(t_indexed, 2) if t_indexed else None,
        "mb_per_s": round(total_bytes / 1e6 / t_indexed, 2) if t_indexed else None,
        "statuses": statuses,
        "unaccounted": unaccounted,
        "dead_letters": dead,
        "goal_under_120s": bool(t_indexed and t_indexed < 120 and not unaccounted),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    t = Table("corpus through the local platform", "value")
    for k, v in result.items():
        t.add_row(k, str(v if not isinstance(v, list) or len(v) < 8 else f"{len(v)} items"))
    Console().print(t)
    return 0
