"""The demo's steps: each one a request to the platform (the CLI's own verbs, in this process) and a
wait on the platform's events, with a one-line summary and the figures the final table shows.

A step that is recorded done is skipped on a re-run; one that was interrupted after its request went
out waits for that request again (:class:`~docllm.demo.state.DemoState`). Every request is one the
platform handles idempotently, so an interrupted step leaves nothing half-done: the platform finishes
what it accepted after its restart, or the step asks again and the platform answers from what it has.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docllm.answers.models import Answer
from docllm.demo.corpus import Page, stage
from docllm.demo.state import DemoState

#: What the demo's engine fault is: every completion of the faulty version answers HTTP 500.
FAULT_KIND = "errors"
POLL_S = 0.5


class DemoError(Exception):
    """A step that could not finish, with what went wrong (the platform's reason where it gave one)."""


@dataclass
class Context:
    """What the steps share: where the platform is, the corpus, the recorded progress."""

    data_dir: Path
    api_url: str
    #: True when this process runs the platform (``docllm demo`` started it): only then can the fault
    #: step set the engine fault, which the platform reads when it starts an engine.
    in_process: bool
    state: DemoState
    family: str
    first: list[Page]
    later: list[Page]
    questions: list[str]
    say: Callable[[str], None] = print
    timeout_s: float = 1800.0
    _platform: Any = field(default=None, repr=False)

    # -- the platform ----------------------------------------------------------------------------------
    def cli(self, *args: str) -> Any:
        """``docllm ARGS --json`` against this data directory, in this process; its JSON answer."""
        from docllm.cli.common import EXIT_INTERRUPTED
        from docllm.cli.main import main

        captured_out, captured_err = io.StringIO(), io.StringIO()
        with redirect_stdout(captured_out), redirect_stderr(captured_err):
            code = main(["--data-dir", str(self.data_dir), *args, "--json"])
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt  # the verb turned Ctrl-C into its exit code: the demo stops too
        text = captured_out.getvalue()
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            body = None
        if code != 0:
            reason = body.get("error") if isinstance(body, dict) else None
            raise DemoError(f"docllm {' '.join(args)}: {reason or captured_err.getvalue().strip() or f'exit {code}'}")
        return body

    def platform(self) -> Any:
        if self._platform is None:
            from argparse import Namespace

            from docllm.cli.common import running_platform

            self._platform, _ = running_platform(Namespace(data_dir=str(self.data_dir)))
        return self._platform

    def wait_event(
        self, wanted: set[str], match: Callable[[dict[str, Any]], bool], *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """The first event of ``wanted`` whose detail ``match``es (from the log's start: a resumed step
        finds an outcome that came while the demo was stopped); a matching "Stage Failed" fails."""
        p = self.platform()
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        seq = 0
        while True:
            for e in p.event_log.since(seq):
                seq = e.seq
                detail = e.body.get("detail") or {}
                if not match(detail):
                    continue
                if e.detail_type in wanted:
                    return dict(e.body)
                if e.detail_type == "Stage Failed":
                    raise DemoError(f"{detail.get('stage', 'a stage')} failed: {detail.get('reason', detail)}")
            if time.monotonic() > deadline:
                raise DemoError(f"no {' or '.join(sorted(wanted))} after {timeout_s or self.timeout_s:.0f} s")
            time.sleep(POLL_S)

    def ask_api(self, question: str) -> tuple[int, Any]:
        """``POST /v1/ask`` as any client (status, body): the fault step's traffic."""
        from docllm.cli.common import api_post
        from docllm.runtime.local import read_runtime_file

        return api_post(
            read_runtime_file(self.data_dir), self.data_dir, "/v1/ask", {"question": question}, timeout_s=60
        )

    def result(self, step: str) -> dict[str, Any]:
        return dict(self.state.step(step).get("result") or {})


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    run: Callable[[Context], tuple[str, dict[str, Any]]]


# -- the steps ----------------------------------------------------------------------------------------


def _ingest(ctx: Context, pages: list[Page], folder: str) -> tuple[str, dict[str, Any]]:
    totals = {"uploaded": 0, "unchanged": 0, "processed": 0, "quarantined": 0, "chunks": 0}
    for service, path in sorted(stage(pages, ctx.data_dir / "demo" / folder).items()):
        report = ctx.cli("ingest", str(path), "--service", service)
        for k in ("uploaded", "unchanged", "processed", "chunks"):
            totals[k] += int(report.get(k) or 0)
        totals["quarantined"] += len(report.get("quarantined") or [])
    services = sorted({p.service for p in pages})
    summary = (
        f"{len(pages)} pages of {', '.join(services)}: {totals['processed']} processed, "
        f"{totals['quarantined']} quarantined, {totals['chunks']} chunks indexed"
    )
    return summary, {**totals, "pages": len(pages), "services": services}


def ingest_first(ctx: Context) -> tuple[str, dict[str, Any]]:
    return _ingest(ctx, ctx.first, "upload-1")


def _model_figures(ctx: Context, version: str) -> dict[str, Any]:
    rows = ctx.cli("models", "--family", ctx.family)
    row: dict[str, Any] = next((r for r in rows if r.get("version") == version), {})
    evaluation = (row.get("evaluation") or {}).get("metrics") or {}
    return {
        "status": row.get("status"),
        "heldout_loss": evaluation.get("heldout_loss"),
        "unigram_val_loss": (row.get("metrics") or {}).get("unigram_val_loss"),
        "dataset_version": row.get("dataset_version"),
    }


def _decided(ctx: Context, body: dict[str, Any], what: str) -> tuple[str, dict[str, Any]]:
    detail = body["detail"]
    version = detail["model_version"]
    if body["detail-type"] != "Model Approved":
        raise DemoError(f"the gate rejected {version}: {'; '.join(map(str, detail.get('reasons') or [])) or body}")
    figures = _model_figures(ctx, version)
    manifest = ctx.cli("manifest", "show", version)
    result = {"model_version": version, **figures, "manifest_sha256": manifest.get("sha256")}
    loss, unigram = figures.get("heldout_loss"), figures.get("unigram_val_loss")
    shown = f"held-out loss {loss:.2f} (token frequencies alone: {unigram:.2f})" if loss and unigram else "evaluated"
    return (
        f"{what} {version}: {shown}, approved by the gate, signed manifest {str(result['manifest_sha256'])[:12]}",
        result,
    )


def train(ctx: Context) -> tuple[str, dict[str, Any]]:
    request_id = ctx.state.step("train").get("request_id")
    if not request_id:
        request_id = ctx.cli("train", "--model-family", ctx.family, "--no-wait")["request_id"]
        ctx.state.begin("train", request_id=request_id)
    body = ctx.wait_event({"Model Approved", "Model Rejected"}, lambda d: d.get("request_id") == request_id)
    return _decided(ctx, body, "trained")


def _serving(ctx: Context) -> str | None:
    shown = ctx.cli("endpoints")
    for row in shown.get("traffic") or []:
        if row.get("role", "stable") == "stable" and row.get("model_version"):
            return str(row["model_version"])
    return None


def _deploy(ctx: Context, version: str) -> None:
    if _serving(ctx) != version:
        ctx.cli("deploy", version, "--target", "local")


def deploy_first(ctx: Context) -> tuple[str, dict[str, Any]]:
    version = ctx.result("train")["model_version"]
    _deploy(ctx, version)
    return f"{version} serves on the local engine", {"model_version": version}


def _show_answer(ctx: Context, question: str, answer: dict[str, Any]) -> None:
    ctx.say(f"    Q: {question}")
    if answer.get("abstained"):
        ctx.say(f"    A: (abstained: {answer.get('reason')})")
        pages = _pages_to_read(answer)
        if pages:
            ctx.say(f"       pages that may cover it (search results, not citations): {', '.join(pages)}")
        return
    ctx.say(f"    A: {answer.get('answer')}")
    for c in answer.get("citations") or []:
        heading = " > ".join(c.get("heading_path") or []) or c.get("title") or ""
        ctx.say(f"       [{c.get('doc_key')}] {heading}")


def _pages_to_read(answer: dict[str, Any]) -> list[str]:
    return [d.doc_key for d in Answer.model_validate(answer).pages_to_read()]


def ask(ctx: Context) -> tuple[str, dict[str, Any]]:
    answers = []
    for question in ctx.questions:
        answer = ctx.cli("ask", question)
        _show_answer(ctx, question, answer)
        answers.append(
            {
                "question": question,
                "answer": answer.get("answer"),
                "abstained": bool(answer.get("abstained")),
                "reason": answer.get("reason"),
                "citations": [c.get("doc_key") for c in answer.get("citations") or []],
                "pages_to_read": _pages_to_read(answer),
                "model_version": answer.get("model_version"),
            }
        )
    cited = sum(1 for a in answers if a["citations"] and not a["abstained"])
    summary = f"{cited} of {len(answers)} questions answered with citations, the others abstained"
    return summary, {"questions": len(answers), "cited": cited, "answers": answers}


def ingest_later(ctx: Context) -> tuple[str, dict[str, Any]]:
    if not ctx.later:
        raise DemoError("the corpus has no page left for the new-documents step (it needs 4 training pages)")
    return _ingest(ctx, ctx.later, "upload-2")


def retrain(ctx: Context) -> tuple[str, dict[str, Any]]:
    run_id = ctx.state.step("retrain").get("run_id")
    if not run_id:
        run_id = ctx.cli("pipeline", "run", ctx.family)["run_id"]
        ctx.state.begin("retrain", run_id=run_id)
    ended = ctx.wait_event({"Pipeline Run Ended"}, lambda d: d.get("run_id") == run_id)["detail"]
    version = ended.get("model_version")
    if ended.get("state") not in ("decided", "deployed") or not version:
        raise DemoError(f"the pipeline run {run_id} ended {ended.get('state')}: {ended.get('reason')}")
    body = ctx.wait_event({"Model Approved", "Model Rejected"}, lambda d: d.get("model_version") == version)
    summary, result = _decided(ctx, body, "retrained")
    first = ctx.result("train")
    diff = ctx.cli("dataset", "diff", str(first.get("dataset_version")), str(result.get("dataset_version")))
    result.update(run_id=run_id, documents_added=len(diff.get("added") or []))
    return f"{result['documents_added']} documents added; {summary}", result


def fault(ctx: Context) -> tuple[str, dict[str, Any]]:
    good, bad = ctx.result("train")["model_version"], ctx.result("retrain")["model_version"]
    if not ctx.in_process:
        raise Skipped(
            "the platform runs in another process, which reads DOCLLM_ENGINE_FAULTS when it starts: "
            "stop it and run docllm demo again to see this step"
        )
    ctx.state.begin("fault", version=bad)
    set_engine_fault(bad)
    stop = threading.Event()
    statuses: list[int] = []

    def traffic() -> None:
        # What users do meanwhile: ask, about four times a second (under the API's default rate limit).
        i = 0
        while not stop.is_set():
            try:
                status, _ = ctx.ask_api(ctx.questions[i % len(ctx.questions)])
                statuses.append(status)
            except Exception:
                statuses.append(0)
            i += 1
            stop.wait(0.25)

    started = time.monotonic()
    asker = threading.Thread(target=traffic, name="demo-traffic", daemon=True)
    if ctx.questions:
        asker.start()
    try:
        if _registry_status(ctx, bad) != "RolledBack":
            _deploy(ctx, bad)
        rolled = ctx.wait_event({"Model Rolled Back"}, lambda d: d.get("model_version") == bad, timeout_s=300)["detail"]
    finally:
        stop.set()
        if asker.is_alive():
            asker.join(70)
    incident: dict[str, Any] = next((i for i in ctx.cli("incidents") if i.get("bad_version") == bad), {})
    alarm = ((incident.get("alarms") or [{}])[0]).get("name", "an alarm")
    after = ctx.cli("ask", ctx.questions[0])["model_version"] if ctx.questions else rolled.get("restored_version")
    result = {
        "bad_version": bad,
        "restored_version": rolled.get("restored_version"),
        "verified": rolled.get("verified"),
        "incident_id": incident.get("incident_id"),
        "alarm": alarm,
        "failed_requests": sum(1 for s in statuses if s >= 500 or s == 0),
        "serving_after": after,
        "seconds_to_restore": round(time.monotonic() - started, 1),
    }
    if result["restored_version"] != good or after != good:
        raise DemoError(f"the rollback restored {result['restored_version']}, and {after} serves; expected {good}")
    summary = (
        f"{bad} deployed with injected 5xx errors; {alarm} fired; rolled back to {good} "
        f"(verified: {result['verified']}), incident {result['incident_id']}"
    )
    return summary, result


def _registry_status(ctx: Context, version: str) -> str | None:
    row: dict[str, Any] = next(
        (r for r in ctx.cli("models", "--family", ctx.family) if r.get("version") == version), {}
    )
    return row.get("status")


def verify(ctx: Context) -> tuple[str, dict[str, Any]]:
    checked = {}
    for step in ("train", "retrain"):
        version = ctx.result(step)["model_version"]
        report = ctx.cli("manifest", "verify", version)  # exit 1 (a DemoError) when anything mismatches
        checked[version] = {k: report.get(k) for k in ("ok", "checked", "sequence")}
    # What the registry says of them after the rollback (the first Approved, the faulty one RolledBack).
    statuses = {version: _registry_status(ctx, version) for version in checked}
    summary = f"{len(checked)} manifests verified: every digest, the signatures and the family's chain"
    return summary, {"manifests": checked, "statuses": statuses}


class Skipped(Exception):
    """A step that cannot run here, with why; the demo goes on."""


def set_engine_fault(version: str) -> None:
    """Makes the engine this process starts for ``version`` fail every completion (a testing aid:
    :mod:`docllm.serving.faults`). Kept beside faults another caller set."""
    from docllm.serving.faults import ENV_ENGINE_FAULTS

    current = [item for item in os.environ.get(ENV_ENGINE_FAULTS, "").split(",") if item.strip()]
    if not any(item.split("=", 1)[0].strip() == version for item in current):
        os.environ[ENV_ENGINE_FAULTS] = ",".join([*current, f"{version}={FAULT_KIND}"])


STEPS: tuple[Step, ...] = (
    Step("ingest", "upload and ingest the corpus", ingest_first),
    Step("train", "dataset, tokenizer, training, evaluation, gate, manifest", train),
    Step("deploy", "deploy the approved model", deploy_first),
    Step("ask", "ask questions", ask),
    Step("add-documents", "add new documents", ingest_later),
    Step("retrain", "retrain the family on the new documents", retrain),
    Step("fault", "inject a fault and watch the rollback", fault),
    Step("verify", "verify the compliance manifests", verify),
)


@dataclass
class Outcome:
    step: Step
    status: str  #: done | resumed (done by an earlier run) | skipped | failed
    seconds: float
    summary: str


def run_steps(
    ctx: Context, steps: tuple[Step, ...] = STEPS, *, progress: Callable[[int, int, Step, str], None]
) -> list[Outcome]:
    """Runs each step not yet done; ``progress(i, n, step, line)`` is called as each starts and ends.
    A failing step ends the run (its DemoError propagates after the outcome is reported)."""
    outcomes: list[Outcome] = []
    for i, step in enumerate(steps, 1):
        recorded = ctx.state.step(step.name)
        if recorded.get("status") == "done":
            outcomes.append(Outcome(step, "resumed", float(recorded.get("seconds") or 0), str(recorded.get("summary"))))
            progress(i, len(steps), step, f"done earlier: {recorded.get('summary')}")
            continue
        progress(i, len(steps), step, "…")
        started = time.monotonic()
        try:
            summary, result = step.run(ctx)
        except Skipped as e:
            outcomes.append(Outcome(step, "skipped", time.monotonic() - started, str(e)))
            progress(i, len(steps), step, f"skipped: {e}")
            continue
        except DemoError as e:
            outcomes.append(Outcome(step, "failed", time.monotonic() - started, str(e)))
            progress(i, len(steps), step, f"failed: {e}")
            raise
        seconds = time.monotonic() - started
        ctx.state.finish(step.name, seconds=seconds, summary=summary, result=result)
        outcomes.append(Outcome(step, "done", seconds, summary))
        progress(i, len(steps), step, f"{seconds:.0f} s: {summary}")
    return outcomes
