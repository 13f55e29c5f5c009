"""``docllm``: run the platform locally, feed it documents, inspect what happened.

Every verb is one function ``cmd_*(args) -> exit code``; :data:`COMMANDS`
is the single table from which the parser is built (a test keeps them equal).
Arguments are validated here, at the edge (``type=``/``choices=``); :func:`main`
turns every failure into one line on stderr (and ``{"error": ...}`` on stdout
under ``--json``) with the exit codes of ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from docllm import __version__
from docllm.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_NOT_RUNNING,
    EXIT_USAGE,
    SERVICE_RULE,
    CliError,
    check_data_dir,
    data_dir,
    duration,
    family_name,
    family_names,
    float_range,
    int_range,
    percentage,
    port,
    print_error,
    service_csv,
    service_name,
)

#: The statuses of ``docllm.records.DocumentStatus`` (a test keeps them equal; no pydantic import here).
DOC_STATUSES = ("processing", "processed", "duplicate", "quarantined", "removed")
MAX_NEW_TOKENS = 2048


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def arg(*flags: str, **kwargs: Any) -> Arg:
    return Arg(flags, kwargs)


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    func: str  # "module:function" so that `docllm --help` imports nothing heavy
    help: str
    args: tuple[Arg, ...] = ()
    #: what the verb needs of --data-dir: "platform" (a running one), "up" (created, writable), "none"
    data: str = "platform"


class LazyHelp(str):
    """Help text computed only when help is shown (the family list reads ``families.yaml``)."""

    _render: Callable[[], str]

    def __new__(cls, render: Callable[[], str]) -> LazyHelp:
        self = super().__new__(cls, "(computed when shown)")
        self._render = render
        return self

    def __mod__(self, params: Any) -> str:
        return self._render() % params


def _families_help(prefix: str) -> LazyHelp:
    return LazyHelp(lambda: f"{prefix}: {', '.join(family_names())}")


JSON = arg("--json", action="store_true", help='machine-readable JSON on stdout (errors too: {"error": ...})')
SERVICE_HELP = f"a service is {SERVICE_RULE}"

#: What a person's review takes: ``approve`` and ``reject`` alike.
REVIEW_ARGS = (
    arg("version", help="model version (docllm models)"),
    arg("--reason", required=True, help="why: recorded in the registry and the compliance manifest"),
    arg("--timeout", type=float_range(0, lo_open=True), default=120, help="seconds to wait (default: %(default)s)"),
    JSON,
)

COMMANDS: tuple[Command, ...] = (
    Command(
        ("up",),
        "platform_cmds:cmd_up",
        "run the whole platform locally in the foreground (Ctrl-C stops)",
        (
            arg(
                "--port",
                type=port,
                default=8787,
                help="API port on 127.0.0.1, 0-65535; 0 picks a free one (default: %(default)s)",
            ),
            arg("--no-auth", action="store_true", help="serve the API without the API key (explicit opt-out)"),
        ),
        data="up",
    ),
    Command(
        ("status",),
        "platform_cmds:cmd_status",
        "queues, in-flight work, DLQ contents with reasons, jobs, recent events",
        (
            JSON,
            arg(
                "--events",
                type=int_range(0, 1000),
                default=10,
                help="how many recent events to show, 0-1000 (default: %(default)s)",
            ),
        ),
    ),
    Command(
        ("events", "tail"),
        "platform_cmds:cmd_events_tail",
        "print the latest events on the buses",
        (
            JSON,
            arg("-n", type=int_range(1, 10000), default=20, help="how many events, 1-10000 (default: %(default)s)"),
            arg("-f", "--follow", action="store_true", help="keep printing new events (--json: one JSON per line)"),
        ),
    ),
    Command(
        ("events", "schemas"),
        "platform_cmds:cmd_events_schemas",
        "export the JSON Schemas of every event contract",
        (arg("--out", default="events/schemas", help="output folder (default: %(default)s)"),),
        data="none",
    ),
    Command(
        ("dlq", "redrive"),
        "platform_cmds:cmd_dlq_redrive",
        "move a queue's dead letters back for another try",
        (arg("queue", help="queue name, e.g. IngestQueue (docllm status lists them)"), JSON),
    ),
    Command(
        ("dlq", "purge"),
        "platform_cmds:cmd_dlq_purge",
        "delete a queue's dead letters for good",
        (
            arg("queue", help="queue name, e.g. IngestQueue (docllm status lists them)"),
            arg("--yes", action="store_true", help="do not ask for confirmation (required when stdin is no terminal)"),
            JSON,
        ),
    ),
    Command(("jobs",), "platform_cmds:cmd_jobs", "list training/tokenizer jobs", (JSON,)),
    Command(
        ("ingest",),
        "docs_cmds:cmd_ingest",
        "upload files or folders to the raw bucket and wait until each is processed and searchable",
        (
            arg("paths", nargs="+", help="files or folders (folders are walked recursively)"),
            arg(
                "--service",
                required=True,
                type=service_name,
                help=f"service/guide name; keys become SERVICE/<path relative to the folder>; {SERVICE_HELP}",
            ),
            arg(
                "--follow-links",
                action="store_true",
                help="also read symbolic links that lead out of the folder (skipped and reported by default)",
            ),
            arg("--no-wait", action="store_true", help="return once uploaded"),
            arg(
                "--timeout",
                type=float_range(0, lo_open=True),
                default=900,
                help="seconds to wait for processing (default: %(default)s)",
            ),
            JSON,
        ),
    ),
    Command(
        ("docs",),
        "docs_cmds:cmd_docs",
        "list documents with status, chunk counts and reasons",
        (
            JSON,
            arg("--status", choices=DOC_STATUSES, help="only documents with this status"),
            arg("--prefix", help="only keys starting with this"),
        ),
    ),
    Command(
        ("chunks",),
        "docs_cmds:cmd_chunks",
        "show a document's chunks (a duplicate says which document holds them)",
        (arg("doc", help="document key, e.g. s3/Welcome.md"), JSON),
    ),
    Command(
        ("dedup-log",),
        "docs_cmds:cmd_dedup_log",
        "what deduplication dropped, why, and duplicate of what",
        (arg("doc", nargs="?", help="only this document"), JSON),
    ),
    Command(
        ("search",),
        "docs_cmds:cmd_search",
        "search the indexed documentation",
        (
            arg("query", help="query text"),
            arg("--k", type=int_range(1, 100), default=10, help="number of hits, 1-100 (default: %(default)s)"),
            arg("--service", type=service_name, help=f"only this service; {SERVICE_HELP}"),
            JSON,
        ),
    ),
    Command(
        ("dataset", "build"),
        "pipeline_cmds:cmd_dataset_build",
        "freeze the processed chunks into a dataset version",
        (
            arg(
                "--services",
                type=service_csv,
                help="comma-separated services (default: all, or the family's)",
            ),
            arg("--family", type=family_name, help=_families_help("model family whose data filter applies")),
            arg("--no-wait", action="store_true", help="return once requested"),
            arg(
                "--timeout",
                type=float_range(0, lo_open=True),
                default=600,
                help="seconds to wait (default: %(default)s)",
            ),
            JSON,
        ),
    ),
    Command(("dataset", "list"), "pipeline_cmds:cmd_dataset_list", "list dataset versions", (JSON,)),
    Command(
        ("dataset", "show"),
        "pipeline_cmds:cmd_dataset_show",
        "statistics and token counts of a dataset version",
        (arg("version", help="dataset version, e.g. ds-…"), JSON),
    ),
    Command(
        ("dataset", "diff"),
        "pipeline_cmds:cmd_dataset_diff",
        "documents added, removed and changed between versions",
        (arg("a", help="older version"), arg("b", help="newer version"), JSON),
    ),
    Command(
        ("train",),
        "pipeline_cmds:cmd_train",
        "train a model family (dataset, tokenizer, shards, training by events)",
        (
            arg(
                "--model-family",
                required=True,
                type=family_name,
                help=_families_help("model family from docllm/training/families.yaml"),
            ),
            arg("--no-wait", action="store_true", help="return once requested"),
            arg(
                "--timeout",
                type=float_range(0, lo_open=True),
                default=3600,
                help="seconds to wait for the gate's decision (default: %(default)s)",
            ),
            arg(
                "--until",
                choices=("trained", "decided"),
                default="decided",
                help="wait for Model Trained, or for evaluation and the gate: Model Approved/Rejected "
                "(default: %(default)s)",
            ),
            JSON,
        ),
    ),
    Command(
        ("models",),
        "model_cmds:cmd_models",
        "list trained models with their registry status (Pending, Approved, Rejected), champion and metrics",
        (arg("--family", type=family_name, help=_families_help("only this model family")), JSON),
    ),
    Command(
        ("model", "show"),
        "model_cmds:cmd_model_show",
        "one model version: training, evaluations, decisions, aliases and its report",
        (arg("version", help="model version (docllm models)"), JSON),
    ),
    Command(
        ("approve",),
        "model_cmds:cmd_approve",
        "approve a model version against the gate's decision (recorded with who and why)",
        REVIEW_ARGS,
    ),
    Command(
        ("reject",),
        "model_cmds:cmd_reject",
        "reject a model version (a champion loses its alias to the previous champion)",
        REVIEW_ARGS,
    ),
    Command(
        ("eval", "run"),
        "model_cmds:cmd_eval_run",
        "evaluate a model version again (held-out, Q&A, hallucination, benchmarks) and gate it",
        (
            arg("version", help="model version (docllm models)"),
            arg(
                "--benchmark",
                action="append",
                default=[],
                help="a benchmark file to upload first and run (JSONL or lm-eval task YAML); repeatable",
            ),
            arg(
                "--timeout",
                type=float_range(0, lo_open=True),
                default=900,
                help="seconds to wait (default: %(default)s)",
            ),
            JSON,
        ),
    ),
    Command(
        ("benchmarks", "add"),
        "model_cmds:cmd_benchmarks_add",
        "check a custom benchmark file and upload it to the raw bucket's benchmarks/ prefix",
        (
            arg("files", nargs="+", help="JSONL benchmark files, or lm-eval task YAML files with their data files"),
            JSON,
        ),
    ),
    Command(("benchmarks", "list"), "model_cmds:cmd_benchmarks_list", "list the custom benchmarks", (JSON,)),
    Command(
        ("lineage",),
        "model_cmds:cmd_lineage",
        "a model version's lineage as a tree: documents, dataset, tokenizer, shards, jobs, evaluation, decisions",
        (
            arg("version", help="model version (docllm models)"),
            arg("--documents", type=int_range(0, 100000), default=10, help="documents to list (default: %(default)s)"),
            JSON,
        ),
    ),
    Command(
        ("manifest", "verify"),
        "model_cmds:cmd_manifest_verify",
        "recompute every digest of a model's compliance manifest, check its signature and its chain",
        (
            arg("version", help="model version (docllm models)"),
            arg("--sequence", type=int_range(1), help="this chain entry of the family (default: the version's newest)"),
            arg(
                "--public-key",
                help="trust only these keys (PEM or keys/*.json; an auditor's own copy) instead of the store's",
            ),
            JSON,
        ),
    ),
    Command(
        ("manifest", "show"),
        "model_cmds:cmd_manifest_show",
        "print a model's latest compliance manifest (an in-toto statement)",
        (arg("version", help="model version (docllm models)"), JSON),
    ),
    Command(
        ("generate",),
        "pipeline_cmds:cmd_generate",
        "continue a prompt with a trained model (local CPU inference)",
        (
            arg("prompt", help="text to continue"),
            arg("--model", required=True, help="model version (docllm models)"),
            arg(
                "--max-tokens",
                type=int_range(1, MAX_NEW_TOKENS),
                default=64,
                help=f"tokens to generate, 1-{MAX_NEW_TOKENS} (default: %(default)s)",
            ),
            arg(
                "--temperature",
                type=float_range(0, 10),
                default=0.8,
                help="sampling temperature, 0-10; 0: greedy (default: %(default)s)",
            ),
            arg(
                "--top-k",
                type=int_range(1),
                default=50,
                help="sample from the k most likely tokens, >= 1 (default: %(default)s)",
            ),
            arg("--seed", type=int_range(0, 2**32 - 1), default=0, help="sampling seed (default: %(default)s)"),
            JSON,
        ),
    ),
    Command(
        ("ask",),
        "serve_cmds:cmd_ask",
        "ask a question: an answer from the deployed model, with citations, or an abstention",
        (
            arg("question", help="the question, in plain words"),
            arg("--k", type=int_range(1, 20), default=5, help="documents to retrieve, 1-20 (default: %(default)s)"),
            arg("--service", type=service_name, help=f"only this service's documents; {SERVICE_HELP}"),
            arg(
                "--stream",
                action="store_true",
                help="show the model's text as it comes, then the checked answer (with --json: the answer only)",
            ),
            JSON,
        ),
    ),
    Command(
        ("deploy",),
        "serve_cmds:cmd_deploy",
        "deploy an Approved model version to a target (refused for anything not Approved)",
        (
            arg("version", help="model version (docllm models)"),
            arg(
                "--target",
                choices=("local", "sagemaker", "bedrock"),
                default="local",
                help="where (default: %(default)s)",
            ),
            arg(
                "--canary",
                type=percentage,
                default=None,
                help="local target: a canary rollout, the new version takes this share of the traffic "
                "(e.g. 10%%) beside the serving one while it bakes (default with --bake: 10%%)",
            ),
            arg(
                "--bake",
                type=duration,
                default=None,
                help="the canary's bake period (e.g. 300s, 5m; default with --canary: 5m): promoted "
                "afterwards if its alarms stayed quiet",
            ),
            arg(
                "--timeout",
                type=float_range(0, lo_open=True),
                default=300,
                help="seconds to wait (default: %(default)s)",
            ),
            JSON,
        ),
    ),
    Command(("endpoints",), "serve_cmds:cmd_endpoints", "what serves on each target, and every deployment", (JSON,)),
    Command(
        ("alarms",),
        "monitor_cmds:cmd_alarms",
        "the template's alarms as the local platform evaluates them (per version too): state, since when, why",
        (JSON,),
    ),
    Command(
        ("eval", "retrieval"),
        "retrieval_cmds:cmd_eval_retrieval",
        "recall@1/5/10, MRR@k, nDCG@k on a question set, per question type",
        (
            arg(
                "file",
                nargs="?",
                help='JSONL: {"question": ..., "expected_doc_keys": [...], "type"?} per line',
            ),
            arg("--set", metavar="FILE", help="the question file (same as FILE)"),
            arg("--k", type=int_range(1, 100), default=10, help="distinct pages scored, 1-100 (default: %(default)s)"),
            arg(
                "--corpus",
                metavar="DIR",
                help="evaluate a temporary index of DIR/<service>/... pages, not the platform's",
            ),
            arg(
                "--services-only",
                action="store_true",
                help="score only the questions whose expected documents belong to ingested services",
            ),
            arg(
                "--encoder",
                metavar="VERSION|DIR",
                help="compare BM25 alone with BM25 + this retriever (the gate's test; exit 1 when worse)",
            ),
            JSON,
        ),
    ),
)


def _plugged_commands(module: str) -> tuple[Command, ...]:
    """The verbs ``docllm.cli.<module>`` lists as plain data in its ``COMMANDS`` (path, "module:function",
    help, ((flags...), argparse kwargs)..., and optionally what the verb needs of --data-dir); none while
    that module does not exist."""
    import importlib

    try:
        mod = importlib.import_module(f"docllm.cli.{module}")
    except ModuleNotFoundError as e:
        if e.name != f"docllm.cli.{module}":
            raise  # the module exists and something it imports is missing: say so
        return ()
    return tuple(
        Command(path, func, help_text, tuple(arg(*flags, **kwargs) for flags, kwargs in args), *(data or ("platform",)))
        for path, func, help_text, args, *data in mod.COMMANDS
    )


COMMANDS = (
    *COMMANDS,
    *_plugged_commands("incident_cmds"),
    *_plugged_commands("canary_cmds"),
    *_plugged_commands("families_cmds"),
    *_plugged_commands("retrieval_cmds"),
    *_plugged_commands("demo_cmds"),
)


class UsageError(Exception):
    """An invalid command line, raised by :meth:`Parser.error` instead of argparse's exit."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{prog}: {message} (see {prog} --help)")


class HelpFormatter(argparse.HelpFormatter):
    """Help wrapped at spaces only: names with hyphens (``tiny-s3-lora``, ``--max-tokens``) stay whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)  # subcommands' parsers are Parsers too
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="docllm",
        description="docllm: your documentation in, your own language models and cited answers out.",
        epilog="Exit codes: 0 ok, 1 failed, 2 invalid arguments, 3 not found, 4 platform not running (docs/cli.md).",
    )
    parser.add_argument("--version", action="version", version=f"docllm {__version__}")
    parser.add_argument("--data-dir", help="local platform state (default: $DOCLLM_DATA_DIR or ./.docllm)")
    subparsers: dict[tuple[str, ...], Any] = {(): parser.add_subparsers(dest="command", metavar="COMMAND")}
    groups: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for cmd in COMMANDS:
        for depth in range(1, len(cmd.path)):
            prefix = cmd.path[:depth]
            if prefix not in groups:
                groups[prefix] = group = subparsers[prefix[:-1]].add_parser(
                    prefix[-1], help=f"{prefix[-1]} commands", description=f"{' '.join(prefix)} commands"
                )
                subparsers[prefix] = group.add_subparsers(dest=f"sub_{depth}", metavar="SUBCOMMAND")
                group.set_defaults(_help=group.format_help)
        p = subparsers[cmd.path[:-1]].add_parser(cmd.path[-1], help=cmd.help, description=cmd.help)
        p.add_argument("--data-dir", default=argparse.SUPPRESS, help="local platform state directory")
        for a in cmd.args:
            p.add_argument(*a.flags, **a.kwargs)
        p.set_defaults(_func=cmd.func, _data=cmd.data)
    return parser


def resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    import importlib

    module, _, name = spec.partition(":")
    func: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(f"docllm.cli.{module}"), name)
    return func


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            code = _main(args_list)
        except SystemExit:  # --help, --version: argparse printed and exits
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # a closed pipe shows here at the latest, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as a process killed by SIGPIPE would.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: list[str]) -> int:
    as_json = "--json" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print_error(e, json_mode=as_json)
        return EXIT_USAGE
    if not getattr(args, "_func", None):
        # A group without its subcommand (`docllm dlq`): that group's help, not the top level's.
        sys.stderr.write(getattr(args, "_help", parser.format_help)())
        return EXIT_USAGE
    as_json = bool(getattr(args, "json", False))
    try:
        if args._data != "none":
            check_data_dir(data_dir(args), create=args._data == "up")
        return resolve(args._func)(args)
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as e:
        code, message = _classify(e)
        if code == EXIT_INTERNAL and os.environ.get("DOCLLM_DEBUG") == "1":
            raise
        print_error(message, json_mode=as_json)
        return code


def _classify(e: Exception) -> tuple[int, str]:
    """Exit code and one-line message of an error that ended a verb."""
    import sqlite3

    from docllm.exceptions import DocllmError, NotFoundError, PermanentError, PlatformNotRunningError

    if isinstance(e, CliError):
        return e.code, str(e)
    if isinstance(e, PlatformNotRunningError):
        return EXIT_NOT_RUNNING, str(e)
    if isinstance(e, NotFoundError):
        return EXIT_NOT_FOUND, str(e)
    if isinstance(e, FileNotFoundError):
        return EXIT_NOT_FOUND, f"no such file or folder: {e.filename}" if e.filename else str(e)
    if isinstance(e, PermanentError):  # by definition: the input is wrong, retrying cannot help
        return EXIT_USAGE, str(e)
    if isinstance(e, DocllmError | OSError):
        return EXIT_FAILED, str(e) or type(e).__name__
    if isinstance(e, sqlite3.Error):
        return EXIT_FAILED, f"database error: {e}"
    return (
        EXIT_INTERNAL,
        f"internal error: {type(e).__name__}: {e} (a bug; run again with DOCLLM_DEBUG=1 for the traceback)",
    )


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
