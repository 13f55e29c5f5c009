"""The chaos run: a real guide through ``docllm up`` while its adapters fail and its process is killed.

1. A fault-free run ingests the files: the reference (every document's state, every indexed chunk id).
2. The chaos run ingests the same files into a fresh platform whose runtime fails 10% of bus publishes,
   5% of state writes and 5% of object reads (``DOCLLM_FAULTS``, docs/faults.md) and is killed with
   SIGKILL ``--kills`` times at random points, then started again, as a user would.
3. Afterwards every document must be processed, duplicate or quarantined, the index must hold exactly the
   reference's chunk ids, nothing may be dead-lettered but what the faults made permanent, and a second
   ingest must change nothing.
4. With ``--train``, the chaos platform then runs dataset → tokenizer → shards → ``smoke`` training with
   the same faults plus a lost ``CreateTrainingJob`` response, and must reach a trained model.

Run:  .venv/bin/python -m bench.chaos [--files N] [--kills 3] [--seed 7] [--train] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform as host
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from docllm.bootstrap import Platform
from docllm.exceptions import NotFoundError
from docllm.records import DOCS_PK
from docllm.service_layer.outbox import pending
from docllm.settings import Settings

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO.parent / "shared" / "corpus" / "awsdocs" / "s3" / "doc_source"
TERMINAL = {"processed", "duplicate", "quarantined"}
INGEST_FAULTS = "bus.publish:p=0.1;state.put:p=0.05;state.delete:p=0.05;state.transact:p=0.05;objects.get:p=0.05"
#: Training adds a lost response on the first job launch (the job starts; the launcher sees an error).
TRAIN_FAULTS = INGEST_FAULTS + ";jobs.submit:nth=1,after"

Log = Callable[[str], None]


@dataclass
class RunResult:
    seconds: float
    kills: int
    records: dict[str, tuple[str, str | None]]
    index: dict[str, list[str]]
    dead_letters: list[tuple[str, str]]
    faults_fired: int = 0
    unfinished: list[str] = field(default_factory=list)


@dataclass
class ChaosReport:
    files: int
    seed: int
    reference_s: float
    chaos_s: float
    kills: int
    faults_fired: int
    unfinished: list[str]
    state_mismatches: list[str]
    index_mismatches: list[str]
    dead_letters: list[tuple[str, str]]
    second_ingest_events: int
    model_version: str | None = None
    train_s: float | None = None
    train_error: str | None = None

    @property
    def ok(self) -> bool:
        trained = self.train_error is None
        return (
            not self.unfinished
            and not self.state_mismatches
            and not self.index_mismatches
            and not self.dead_letters
            and self.second_ingest_events == 0
            and trained
        )


class Runtime:
    """``docllm up`` as its own process group, started again after every kill."""

    def __init__(self, data: Path, faults: str, seed: int) -> None:
        self.data, self.faults, self.seed = data, faults, seed
        self.proc: subprocess.Popen[bytes] | None = None
        self.trace = data.parent / f"{data.name}-faults.tsv"
        self.starts = 0

    def start(self) -> None:
        env = dict(os.environ)
        env.pop("DOCLLM_FAULTS", None)
        # SIGKILLed runtimes would leave engine processes behind: this run measures the pipeline, not serving.
        env["DOCLLM_DEPLOY_TARGET"] = "none"
        if self.faults:
            # A new seed per start: the same faults again after every restart would test less.
            env["DOCLLM_FAULTS"] = f"{self.faults};seed={self.seed + self.starts}"
            env["DOCLLM_FAULTS_TRACE"] = str(self.trace)
        self.starts += 1
        (self.data / "runtime.json").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(self.data), "up", "--port", "0", "--no-auth"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not (self.data / "runtime.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docllm up did not start (exit {self.proc.poll()})")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)

    def faults_fired(self) -> int:
        if not self.trace.exists():
            return 0
        return sum("\tfault-" in line for line in self.trace.read_text(encoding="utf-8").splitlines())


def platform(data: Path) -> Platform:
    """The uploader's view of the platform: no faults (S3 and the user are not under test)."""
    env = {"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data)}
    return Platform(Settings.from_env(env), template=REPO / "template.yaml", faults=None)


def upload(p: Platform, files: list[Path], on_file: Callable[[int], None] | None = None) -> dict[str, str]:
    """As ``docllm ingest DIR --service s3`` does: unchanged bytes are not uploaded again."""
    uploaded: dict[str, str] = {}
    for n, path in enumerate(files):
        key = f"s3/{path.name}"
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            if p.objects.head(p.settings.raw_bucket, key).metadata.get("sha256") == sha:
                continue
        except NotFoundError:
            pass
        info = p.objects.put_file(p.settings.raw_bucket, key, path, metadata={"service": "s3", "sha256": sha})
        uploaded[key] = info.version_id or info.etag
        if on_file is not None:
            on_file(n)
    return uploaded


def unfinished(p: Platform, uploaded: dict[str, str]) -> list[str]:
    """Uploaded documents not yet in a final state at their version (and, with chunks, not yet indexed)."""
    records = dict(p.state.query(DOCS_PK, "s3/"))
    indexed = p.search.document_versions()
    left = []
    for key, version in uploaded.items():
        r = records.get(key)
        final = r is not None and r["version_id"] == version and r["status"] in TERMINAL
        if not final or (r["chunk_count"] and indexed.get(key) != version):  # type: ignore[index]
            left.append(key)
    return left


def busy(p: Platform) -> bool:
    q = p.local_queue
    return bool(pending(p)) or any((s := q.stats(name)).visible or s.in_flight or s.delayed for name in q.queues)


def ingest_run(
    files: list[Path], data: Path, *, faults: str, kills: int, seed: int, timeout: float, log: Log
) -> tuple[RunResult, Runtime, Platform]:
    data.mkdir(parents=True)
    rt = Runtime(data, faults, seed)
    rt.start()
    p = platform(data)
    rng = random.Random(seed)
    # Kill points: during the uploads (at random files) and, the last one, while the backlog drains.
    upload_kills = sorted(rng.sample(range(1, len(files)), k=max(0, min(kills - 1, len(files) - 1))))
    done_kills = 0

    def maybe_kill(n: int) -> None:
        nonlocal done_kills
        if upload_kills and n == upload_kills[0]:
            upload_kills.pop(0)
            rt.kill()
            done_kills += 1
            log(f"  SIGKILL #{done_kills} after uploading {n} files; starting again")
            rt.start()

    t0 = time.perf_counter()
    uploaded = upload(p, files, maybe_kill)
    drain_kill = kills > done_kills
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = unfinished(p, uploaded)
        if drain_kill and len(left) <= len(uploaded) // 2:
            rt.kill()
            done_kills += 1
            log(f"  SIGKILL #{done_kills} with {len(left)} documents still in flight; starting again")
            rt.start()
            drain_kill = False
        if not left and not busy(p):
            break
        time.sleep(0.25)
    seconds = time.perf_counter() - t0
    records = {k: (i["status"], i.get("duplicate_of")) for k, i in p.state.query(DOCS_PK, "s3/")}
    index = {k: p.search.chunk_ids(k) for k in sorted(p.search.document_versions())}  # type: ignore[attr-defined]
    dead = [(q, d.reason) for q in p.local_queue.queues for d in p.local_queue.dead_letters(q)]
    result = RunResult(seconds, done_kills, records, index, dead, rt.faults_fired(), unfinished(p, uploaded))
    return result, rt, p


def ingest_again(p: Platform, files: list[Path], got: RunResult, *, timeout: float) -> int:
    """A second ingest: ``docllm ingest`` again (unchanged bytes are not uploaded) and every S3
    "Object Created" event of the first delivered once more (as S3 may). Returns what changed: the
    platform's own events published in answer, plus records or indexed chunk ids that differ."""
    from docllm.events.envelope import BusEvent
    from docllm.faults import unwrap

    before = p.event_log.last(1)[0].seq
    again = upload(p, files)
    created = [e.body for e in p.event_log.since(0, limit=1_000_000) if e.detail_type == "Object Created"]
    unwrap(p.default_bus).publish([BusEvent.model_validate(body) for body in created])
    deadline = time.monotonic() + timeout
    time.sleep(0.5)
    while busy(p) and time.monotonic() < deadline:
        time.sleep(0.25)
    answered = [e for e in p.event_log.since(before, limit=1_000_000) if not e.source.startswith("aws.")]
    records = {k: (i["status"], i.get("duplicate_of")) for k, i in p.state.query(DOCS_PK, "s3/")}
    index = {k: p.search.chunk_ids(k) for k in sorted(p.search.document_versions())}  # type: ignore[attr-defined]
    changed = sum(records.get(k) != v for k, v in got.records.items()) + sum(
        index.get(k) != v for k, v in got.index.items()
    )
    return len(again) + len(answered) + changed


def train(rt: Runtime, p: Platform, *, timeout: float, log: Log) -> tuple[str | None, float, str | None]:
    """``docllm train --model-family smoke`` against the faulty runtime; (model version, seconds, error)."""
    rt.stop()
    rt.faults = TRAIN_FAULTS
    rt.start()
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "docllm.cli.main",
            "--data-dir",
            str(rt.data),
            "train",
            "--model-family",
            "smoke",
            # Training is what this run puts under faults; evaluation and the gate follow by events.
            "--until",
            "trained",
            "--timeout",
            str(int(timeout)),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    try:
        event = json.loads(out.stdout)
    except json.JSONDecodeError:
        return None, seconds, f"docllm train exited {out.returncode}: {out.stderr.strip()[-500:]}"
    if event.get("detail-type") != "Model Trained":
        return None, seconds, str(event.get("error", event))
    version = str(event["detail"]["model_version"])
    log(f"  trained {version} in {seconds:.0f}s")
    return version, seconds, None


def run(
    files: list[Path],
    workdir: Path,
    *,
    kills: int = 3,
    seed: int = 7,
    with_training: bool = False,
    timeout: float = 900,
    log: Log = print,
) -> ChaosReport:
    log(f"reference run: {len(files)} files, no faults")
    ref, rt, _ = ingest_run(files, workdir / "reference", faults="", kills=0, seed=seed, timeout=timeout, log=log)
    rt.stop()
    log(f"chaos run: {INGEST_FAULTS}; {kills} SIGKILLs")
    got, rt, p = ingest_run(
        files, workdir / "chaos", faults=INGEST_FAULTS, kills=kills, seed=seed, timeout=timeout, log=log
    )
    try:
        second = ingest_again(p, files, got, timeout=timeout)
        report = ChaosReport(
            files=len(files),
            seed=seed,
            reference_s=ref.seconds,
            chaos_s=got.seconds,
            kills=got.kills,
            faults_fired=got.faults_fired,
            unfinished=got.unfinished,
            state_mismatches=sorted(
                k for k in ref.records.keys() | got.records.keys() if ref.records.get(k) != got.records.get(k)
            ),
            index_mismatches=sorted(
                k for k in ref.index.keys() | got.index.keys() if ref.index.get(k) != got.index.get(k)
            ),
            dead_letters=got.dead_letters,
            second_ingest_events=second,
        )
        if with_training:
            report.model_version, report.train_s, report.train_error = train(rt, p, timeout=timeout, log=log)
            report.faults_fired = rt.faults_fired()
    finally:
        rt.stop()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=0, help="the first N files of the S3 guide (default: all 618)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the runtime (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the faults and the kill points")
    parser.add_argument("--train", action="store_true", help="then dataset → tokenizer → shards → smoke training")
    parser.add_argument("--timeout", type=float, default=900, help="give up on a phase after this many seconds")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    args = parser.parse_args(argv)
    if not GUIDE.is_dir():
        print("../shared/corpus/awsdocs/s3 is not present; nothing to run", file=sys.stderr)
        return 0
    files = sorted(GUIDE.glob("*.md"))
    files = files[: args.files] if args.files > 0 else files
    log: Log = (lambda _m: None) if args.json else print
    with tempfile.TemporaryDirectory() as tmp:
        report = run(
            files, Path(tmp), kills=args.kills, seed=args.seed, with_training=args.train, timeout=args.timeout, log=log
        )
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
        return 0 if report.ok else 1
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        host.processor(),
    )
    rows = [
        ("machine", f"{cpu}, {os.cpu_count()} cores"),
        ("files", str(report.files)),
        ("reference run (no faults)", f"{report.reference_s:.1f} s"),
        ("chaos run", f"{report.chaos_s:.1f} s, {report.kills} SIGKILLs, {report.faults_fired} faults injected"),
        ("unfinished documents", str(len(report.unfinished))),
        ("states differing from the reference", str(len(report.state_mismatches))),
        ("index entries differing from the reference", str(len(report.index_mismatches))),
        ("dead letters", str(len(report.dead_letters))),
        ("changes from a second ingest (re-upload + every S3 event again)", str(report.second_ingest_events)),
    ]
    if args.train:
        rows.append(("smoke training under faults", report.model_version or f"FAILED: {report.train_error}"))
        rows.append(("training wall time", f"{report.train_s:.0f} s" if report.train_s else "-"))
    width = max(len(r[0]) for r in rows)
    print("\n| what | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    print(f"\n{'OK' if report.ok else 'FAILED'}")
    return 0 if report.ok else 1
