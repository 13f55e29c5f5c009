"""``docllm demo``: the whole lifecycle on the sample corpus (or a folder), then the platform keeps running.

The platform is this process's own (started here, as ``docllm up`` would) unless one already runs for
the data directory, which is then used as it is. Progress goes to stderr, one line as each step starts
and ends; the summary table (or, with ``--json``, the summary object on stdout) comes last. The steps
themselves are :mod:`docllm.demo.steps`; docs/demo.md describes them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

from docllm.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    console,
    data_dir,
    emit_json,
    line,
    lit,
    out,
    port,
    print_table,
)

_JSON = (("--json",), {"action": "store_true", "help": 'the summary as JSON on stdout (errors too: {"error": ...})'})

COMMANDS: tuple[tuple[Any, ...], ...] = (
    (
        ("demo",),
        "demo_cmds:cmd_demo",
        "the whole lifecycle on the sample corpus: ingest, train, evaluate, gate, deploy, ask, retrain, "
        "rollback, verify; a re-run resumes; the platform keeps running afterwards",
        (
            (
                ("--corpus",),
                {"help": "a folder holding one sub-folder of pages per service (default: samples/corpus)"},
            ),
            (
                ("--quick",),
                {"action": "store_true", "help": "the quickdemo family (capped at 3 minutes) and three questions"},
            ),
            (
                ("--port",),
                {
                    "type": port,
                    "default": 8787,
                    "help": "API port when the demo starts the platform, 0-65535; 0 picks a free one "
                    "(default: %(default)s)",
                },
            ),
            (
                ("--exit",),
                {"action": "store_true", "help": "stop the platform the demo started once it is done (CI)"},
            ),
            _JSON,
        ),
        "up",
    ),
)

QUESTIONS = 5
QUICK_QUESTIONS = 3
#: The demo's model cannot answer every question grounded after minutes of training; what it is
#: shown doing is the 5xx alarm and the rollback, so the ungrounded-rate alarm is set out of reach
#: (``sam deploy --parameter-overrides`` style) unless the person running it chose otherwise. The
#: handlers log errors only: their JSON lines would bury the progress lines (and share stdout with --json).
DEMO_OVERRIDES = "AskUngroundedRateAlarmPercent=100 LogLevel=ERROR"


def cmd_demo(args: Namespace) -> int:
    from docllm.demo.corpus import CorpusError, discover, questions, sample_corpus, split_waves
    from docllm.demo.state import DemoState
    from docllm.demo.steps import Context, DemoError, run_steps
    from docllm.runtime.local import lock_holder

    d = data_dir(args)
    corpus = Path(args.corpus).resolve() if args.corpus else sample_corpus()
    try:
        pages = discover(corpus)
    except CorpusError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    state = DemoState(d / "demo", corpus=str(corpus), quick=args.quick)
    if (state.corpus, state.quick) != (str(corpus), args.quick):
        raise CliError(
            f"{d} holds a demo of {state.corpus}{' (--quick)' if state.quick else ''}; "
            "run this one with another --data-dir",
            EXIT_USAGE,
        )
    first, later = split_waves(pages)
    started = time.monotonic()
    runtime = None
    if lock_holder(d) is None:
        runtime = _start_platform(d, args.port, state)
    try:
        from docllm.runtime.local import read_runtime_file

        api_url = str(read_runtime_file(d)["api_url"])
        ctx = Context(
            data_dir=d,
            api_url=api_url,
            in_process=runtime is not None,
            state=state,
            family="quickdemo" if args.quick else "demo",
            first=first,
            later=later,
            questions=questions(corpus, first, QUICK_QUESTIONS if args.quick else QUESTIONS),
            say=lambda text: console.print(lit(text, multiline=True)),
        )
        console.print(line("docllm demo: ", lit(corpus, "bold"), f" ({len(pages)} pages), platform at ", lit(api_url)))
        try:
            outcomes = run_steps(ctx, progress=_progress)
        except DemoError as e:
            raise CliError(f"{e} (fix it and run docllm demo again: finished steps are kept)", EXIT_FAILED) from None
        total = time.monotonic() - started
        dashboard = f"{api_url}/dashboard"
        _summary(args, ctx, outcomes, total, dashboard)
        if runtime is not None and not args.exit:
            console.print(line("the platform keeps running: ", lit(api_url, "bold"), "; Ctrl-C stops it"))
            _wait_for_signal()
        return 0
    except KeyboardInterrupt:
        console.print("interrupted: finished steps are kept; run docllm demo again to resume")
        return EXIT_INTERRUPTED
    finally:
        if runtime is not None:
            runtime.stop()


def _start_platform(d: Path, port: int, state: Any) -> Any:
    from docllm.runtime.local import LocalRuntime

    os.environ.setdefault("DOCLLM_PARAMETER_OVERRIDES", DEMO_OVERRIDES)
    fault = state.step("fault")
    if fault.get("version") and fault.get("status") != "done":
        # The fault step was interrupted: the faulty version's engine is restored with its fault.
        from docllm.demo.steps import set_engine_fault

        set_engine_fault(str(fault["version"]))
    runtime = LocalRuntime(d, port=port, auth=True, log=_runtime_log)
    console.print(line("docllm demo: starting the local platform in ", lit(d, "bold"), " …"))
    runtime.start()
    return runtime


def _runtime_log(message: str) -> None:
    # Alarms going to OK (or to INSUFFICIENT_DATA) are the platform settling: only firing ones are news.
    if not message.startswith("alarm ") or "-> ALARM" in message:
        console.print(lit(message, "dim"))


def _progress(i: int, n: int, step: Any, text: str) -> None:
    console.print(line((f"[{i}/{n}] ", "bold"), lit(step.title), ": ", lit(text)))


def _summary(args: Namespace, ctx: Any, outcomes: list[Any], total: float, dashboard: str) -> None:
    rows = [(o.step.name, o.status, f"{o.seconds:.0f}", o.summary) for o in outcomes]
    if args.json:
        emit_json(
            {
                "data_dir": str(ctx.data_dir),
                "api_url": ctx.api_url,
                "dashboard_url": dashboard,
                "family": ctx.family,
                "seconds": round(total, 1),
                "steps": [
                    {
                        "name": o.step.name,
                        "status": o.status,
                        "seconds": round(o.seconds, 1),
                        "summary": o.summary,
                        "result": ctx.result(o.step.name),
                    }
                    for o in outcomes
                ],
            }
        )
    else:
        print_table(["step", "status", "seconds", "what happened"], rows, console_=out)
    console.print(
        line(
            f"demo finished in {total:.0f} s. Dashboard: ",
            lit(dashboard, "bold"),
            " (sign in with the API key in ",
            lit(ctx.data_dir / "api-key"),
            ")",
        )
    )


def _wait_for_signal() -> None:
    """Foreground until Ctrl-C or SIGTERM (``docllm up``'s behaviour; the caller stops the platform)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
