"""Time to roll a bad model back, on the local platform, for each kind of fault.

One run, one table. The platform is ``docllm up`` (in this process, so the run can read its event log)
on a fresh data directory holding the first ``--files`` pages of the S3 guide. The versions are
random-weight ``tiny`` exports (``bench.serve.exports``: 4 layers, 256 wide, the 32k tokenizer, a
512-token context) registered Approved: what is measured is the monitoring loop, not a model, and a
trained family would add minutes of training per round and nothing to the timings. A random-weight
model grounds no answer, so the ungrounded-rate alarm is set out of reach for the run
(``DOCLLM_PARAMETER_OVERRIDES``). The ``ungrounded`` fault needs a trained good version whose answers
are mostly grounded or abstain: ``--export`` gives a trained model's Hugging Face export to use for
every version instead (the alarm then keeps its template threshold). Then, for each fault kind:

1. the good version serves and clients ask ``/v1/ask`` back to back;
2. a fresh version is deployed with the fault set for it (``DOCLLM_ENGINE_FAULTS``, docs/faults.md):
   ``errors`` (every completion fails), ``slow`` (each completion waits ``--slow-s``) or ``ungrounded``
   (each completion is an invented sentence);
3. the serving alarms (template.yaml, evaluated by the local platform) see it, the rollback stage
   redeploys the good version, verifies it serves, marks the bad one RolledBack, opens an incident;
4. traffic runs on for ``--settle-s``.

Measured per fault, from the clients' own clocks and the platform's events:

- detect: from the first bad request (the first request sent after the bad version was deployed that
  failed or was answered by it) to the alarm's state change to ALARM;
- restore: from the alarm to the good version serving all traffic (the rollback's switch of the
  endpoint, from its deployment record; every request sent after it goes to the good version);
- clients all good: from the alarm to the start of the first request from which on every request was
  answered by the good version (adds the wait for requests in flight on the bad version: a slow one
  holds its client for ``--slow-s``);
- failed by the switch: requests that failed and were not sent to the bad version (before its
  deployment, or after the rollback's "Model Rolled Back") — the faults' own failures do not count.

Goals (issue 16): restore < 5 s; detect < 40 s for the error and latency faults; 0 failed by the switch.
For scale: Flagger's canary analysis fails a rollout after ``threshold`` failed checks of ``interval``
each (its docs' example: 5 × 1 min), and SageMaker's deployment guardrails act only in a rollout's bake
period, on CloudWatch alarms (docs/monitoring.md).

Run:  .venv/bin/python -m bench.rollback [--faults errors,slow] [--files 20] [--json]
      .venv/bin/python -m bench.rollback --faults ungrounded --export EXPORT_DIR --files 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.evaluate.run import cpu_model
from bench.serve.exports import random_export
from docllm.bootstrap import Platform
from docllm.cli.main import main as docllm
from docllm.registry.models import PackageSpec
from docllm.runtime.local import LocalRuntime
from docllm.service_layer import deploy as deploy_stage
from docllm.service_layer.jobs import MODELS_PK

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO.parent / "shared" / "corpus" / "awsdocs" / "s3" / "doc_source"
QUESTIONS = [
    "How do I enable versioning on a bucket?",
    "What is the maximum size of an object?",
    "How do I configure lifecycle rules?",
    "How can I block public access to my bucket?",
    "What storage classes are available?",
    "How do I replicate objects to another region?",
]
FAULTS = {"errors": "errors", "slow": "slow:{slow}", "ungrounded": "ungrounded"}
ALARM = "CloudWatch Alarm State Change"
FAMILY = "tiny-s3"


@dataclass
class Request:
    start: float
    end: float
    status: int
    model_version: str | None


@dataclass
class Round:
    fault: str
    good: str
    bad: str = ""
    bad_deployed_at: float = 0.0
    first_bad_at: float | None = None
    alarm: str | None = None
    alarm_at: float | None = None
    rolled_back_at: float | None = None
    switched_back_at: float | None = None
    all_good_at: float | None = None
    requests: int = 0
    failed_by_fault: int = 0
    failed_by_switch: int = 0
    incident: str | None = None
    bad_status: str | None = None
    error: str | None = None
    detect_s: float | None = None
    restore_s: float | None = None
    clients_good_s: float | None = None
    notes: list[str] = field(default_factory=list)


def _iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _cli(rt: LocalRuntime, *args: str) -> Any:
    """``docllm ARGS --json`` in this process, against the running platform."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = docllm(["--data-dir", str(rt.data_dir), *args, "--json"])
    if code != 0:
        raise RuntimeError(f"docllm {' '.join(args)} exited {code}: {out.getvalue()[-500:]}")
    return json.loads(out.getvalue())


def _events(rt: LocalRuntime, detail_type: str | tuple[str, ...]) -> list[dict[str, Any]]:
    assert rt.platform is not None
    types = (detail_type,) if isinstance(detail_type, str) else detail_type
    return [e.body for e in rt.platform.event_log.since(0) if e.detail_type in types]


def _wait(rt: LocalRuntime, detail_type: str | tuple[str, ...], match: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for body in _events(rt, detail_type):
            if match(body.get("detail") or {}):
                return body
        for body in _events(rt, "Stage Failed"):
            detail = body.get("detail") or {}
            if match(detail):
                raise RuntimeError(f"stage failed: {detail}")
        time.sleep(0.2)
    raise TimeoutError(f"no {detail_type!r} within {timeout:.0f} s")


class Traffic:
    """``clients`` threads asking ``/v1/ask`` back to back; every request recorded with its own clock."""

    def __init__(self, url: str, key: str, clients: int) -> None:
        self.url, self.key, self.clients = url, key, clients
        self.requests: list[Request] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _client(self, i: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        with httpx.Client(base_url=self.url, headers=headers, timeout=60) as http:
            n = i
            while not self._stop.is_set():
                question = QUESTIONS[n % len(QUESTIONS)]
                n += 1
                start = time.time()
                try:
                    resp = http.post("/v1/ask", json={"question": question})
                    status = resp.status_code
                    version = resp.json().get("model_version") if status == 200 else None
                except httpx.HTTPError:
                    status, version = 0, None
                with self._lock:
                    self.requests.append(Request(start, time.time(), status, version))

    def snapshot(self) -> list[Request]:
        with self._lock:
            return sorted(self.requests, key=lambda r: r.start)


def run_round(rt: LocalRuntime, good: str, bad: str, fault: str, args: argparse.Namespace) -> Round:
    spec = FAULTS[fault].format(slow=args.slow_s)
    r = Round(fault=fault, good=good, bad=bad)
    url, key = rt.api_url, (rt.api_key() if rt.auth else "")
    assert rt.platform is not None
    os.environ["DOCLLM_ENGINE_FAULTS"] = f"{bad}={spec}"
    with Traffic(url, key, args.clients) as traffic:
        try:
            time.sleep(args.settle_s)  # the good version under traffic first
            _cli(rt, "deploy", bad, "--target", "local")
            deployed = _wait(rt, "Model Deployed", lambda d: d.get("model_version") == bad, args.timeout)
            r.bad_deployed_at = _iso(deployed["time"])
            alarm = _wait(
                rt,
                ALARM,
                lambda d: (
                    d.get("state", {}).get("value") == "ALARM" and _iso(d["state"]["timestamp"]) > r.bad_deployed_at
                ),
                args.timeout,
            )
            r.alarm = alarm["detail"]["alarmName"]
            r.alarm_at = _iso(alarm["detail"]["state"]["timestamp"])
            rolled = _wait(rt, "Model Rolled Back", lambda d: d.get("model_version") == bad, args.timeout)
            r.rolled_back_at = _iso(rolled["time"])
            r.incident = rolled["detail"].get("incident_id")
            time.sleep(args.settle_s)
        except (TimeoutError, RuntimeError) as e:
            r.error = str(e)
        finally:
            os.environ.pop("DOCLLM_ENGINE_FAULTS", None)
        requests = traffic.snapshot()
    # The events' times have whole seconds; the deployment records have milliseconds: the switch to the
    # bad version, and the rollback's switch back (its request id is the incident's), are taken from them.
    for d in deploy_stage.deployments(rt.platform):
        if d.get("model_version") == bad and d.get("finished_at"):
            r.bad_deployed_at = _iso(d["finished_at"])
        elif d.get("model_version") == good and r.incident and d.get("request_id") == r.incident:
            r.switched_back_at = _iso(d["finished_at"])
    _score(r, requests)
    r.bad_status = rt.platform.registry.get(bad).display_status
    return r


def _score(r: Round, requests: list[Request]) -> None:
    r.requests = len(requests)
    if not r.bad_deployed_at:
        return
    # A request sent before the switch back went to the bad version (it may fail after the switch).
    bad_window_end = r.switched_back_at or r.rolled_back_at or float("inf")
    for q in requests:
        failed = q.status != 200
        sent_to_bad = r.bad_deployed_at <= q.start <= bad_window_end or q.model_version == r.bad
        if failed and sent_to_bad:
            r.failed_by_fault += 1
        elif failed:
            r.failed_by_switch += 1
            if len(r.notes) < 5:  # what they were, for the reader of the JSON
                r.notes.append(f"switch failure: HTTP {q.status} sent {q.start - r.bad_deployed_at:+.2f} s")
    bad = [
        q for q in requests
        if q.start >= r.bad_deployed_at and (q.status != 200 or q.model_version == r.bad)
    ]  # fmt: skip
    r.first_bad_at = bad[0].start if bad else None
    # The good version serves all traffic from the first request after which every request was its.
    tail_start = None
    for q in reversed(requests):
        if q.status == 200 and q.model_version == r.good:
            tail_start = q.start
        else:
            break
    r.all_good_at = tail_start
    if r.first_bad_at is not None and r.alarm_at is not None:
        r.detect_s = round(r.alarm_at - r.first_bad_at, 2)
    if r.alarm_at is not None and r.switched_back_at is not None:
        r.restore_s = round(max(0.0, r.switched_back_at - r.alarm_at), 2)
    if r.alarm_at is not None and r.all_good_at is not None:
        r.clients_good_s = round(max(0.0, r.all_good_at - r.alarm_at), 2)


def bootstrap(rt: LocalRuntime, files: int, versions: list[str], work: Path, export: Path | None = None) -> None:
    """The first ``files`` pages of the S3 guide ingested, and ``versions`` deployable: a random-weight
    ``tiny`` export in the artifact bucket, a training record and an Approved registry package each."""
    assert rt.platform is not None
    p = rt.platform
    for f in sorted(GUIDE.glob("*.md"))[:files]:
        p.objects.put(p.settings.raw_bucket, f"s3/{f.name}", f.read_bytes(), metadata={"service": "s3"})
    register_approved(p, export or random_export(work, "tiny"), versions, family=FAMILY)
    if not rt.wait_idle(600):
        raise RuntimeError("the platform did not finish ingesting")


def register_approved(p: Platform, export: Path, versions: list[str], *, family: str) -> None:
    """Each of ``versions`` deployable on ``p`` without training: ``export``'s files as its Hugging Face
    export, a training record naming it, and a registry package set Approved (a benchmark's fixture:
    it skips the gate, which has nothing to judge in random weights)."""
    art = p.settings.artifact_bucket
    for version in versions:
        prefix = f"models/{version}/hf/"
        for path in sorted(export.rglob("*")):
            if path.is_file():
                p.objects.put(art, prefix + path.relative_to(export).as_posix(), path.read_bytes())
        export_uri = f"s3://{art}/{prefix}"
        p.state.put(MODELS_PK, version, {"version": version, "family": family, "export_uri": export_uri})
        p.registry.register(
            PackageSpec(
                model_version=version,
                family=family,
                export_uri=export_uri,
                report_uri=f"s3://{art}/evaluations/{version}/report.json",
                report_sha256="0" * 64,
                evaluation_id=f"eval-{version}",
            )
        )
        p.registry.set_status(version, "Approved", "bench.rollback: a deployable random-weight version")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--faults", default="errors,slow", help="fault kinds, comma-separated (errors, slow; ungrounded with --export)"
    )
    parser.add_argument("--files", type=int, default=20, help="pages of the S3 guide to ingest (default 20)")
    parser.add_argument(
        "--export",
        type=Path,
        help="a trained model's Hugging Face export for every version (default: random-weight tiny; "
        "needed for the ungrounded fault, whose good version must ground its answers)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/docllm-bench-serve"), help="exports (kept)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent /v1/ask clients (default 2)")
    parser.add_argument("--slow-s", type=float, default=3.0, help="the slow fault's delay per completion")
    parser.add_argument("--settle-s", type=float, default=5.0, help="traffic kept running after the rollback")
    parser.add_argument("--timeout", type=float, default=120, help="give up on a phase after this many seconds")
    parser.add_argument("--data-dir", type=Path, help="keep the platform here (default: a temporary directory)")
    parser.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault kind(s) {unknown}; choose from {sorted(FAULTS)}")
    if not GUIDE.is_dir():
        print("../shared/corpus/awsdocs/s3 is not present; nothing to run", file=sys.stderr)
        return 0
    log = (lambda _m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="docllm-bench-rollback-"))
    os.environ.setdefault("DOCLLM_ASK_RATE", "1000")  # the per-key limit is a policy, not what is measured
    os.environ.setdefault("DOCLLM_ASK_BURST", "1000")
    if args.export is None:
        # A random-weight model grounds nothing: the ungrounded-rate alarm would fire on the good version.
        os.environ["DOCLLM_PARAMETER_OVERRIDES"] = "AskUngroundedRateAlarmPercent=100"
        if "ungrounded" in faults:
            parser.error("the ungrounded fault needs a trained, grounded good version: give --export")
    rt = LocalRuntime(data, template=REPO / "template.yaml", port=0)
    rt.start()
    rounds: list[Round] = []
    good, bads = "tiny-bench-good", [f"tiny-bench-bad-{i + 1}" for i in range(len(faults))]
    try:
        log(f"platform in {data}; ingesting {args.files} pages, registering {1 + len(bads)} versions…")
        bootstrap(rt, args.files, [good, *bads], args.work, args.export)
        _cli(rt, "deploy", good, "--target", "local")
        _wait(rt, "Model Deployed", lambda d: d.get("model_version") == good, args.timeout)
        log(f"good version {good} serves")
        for i, (fault, bad) in enumerate(zip(faults, bads, strict=True)):
            log(f"round {i + 1}/{len(faults)}: {fault}")
            rounds.append(run_round(rt, good, bad, fault, args))
            log(f"  {asdict(rounds[-1])}")
    finally:
        rt.stop()
        if args.data_dir is None:
            shutil.rmtree(data, ignore_errors=True)
    result = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, Python {host.python_version()}",
        "clients": args.clients,
        "rounds": [asdict(r) for r in rounds],
        "goals": goals(rounds),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(table(result))
    return 0 if all(r.error is None for r in rounds) else 1


def goals(rounds: list[Round]) -> dict[str, bool]:
    timed = [r for r in rounds if r.fault in ("errors", "slow")]
    return {
        "restore < 5 s": all(r.restore_s is not None and r.restore_s < 5 for r in rounds),
        "detect < 40 s (errors, slow)": all(r.detect_s is not None and r.detect_s < 40 for r in timed),
        "0 failed by the switch": all(r.failed_by_switch == 0 for r in rounds),
    }


def table(result: dict[str, Any]) -> str:
    def s(v: float | None) -> str:
        return "—" if v is None else f"{v:.1f} s"

    lines = [
        f"machine: {result['machine']}; {result['clients']} clients",
        "",
        "| fault | alarm | detect | restore | clients all good | requests | failed by fault | failed by switch "
        "| bad version now |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rounds"]:
        lines.append(
            f"| {r['fault']} | {r['alarm'] or r['error'] or '—'} | {s(r['detect_s'])} | {s(r['restore_s'])} "
            f"| {s(r['clients_good_s'])} "
            f"| {r['requests']} | {r['failed_by_fault']} | {r['failed_by_switch']} | {r['bad_status'] or '—'} |"
        )
    lines += ["", "goals: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in result["goals"].items())]
    return "\n".join(lines)
