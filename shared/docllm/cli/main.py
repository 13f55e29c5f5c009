"""``docllm``: run the platform locally, feed it documents, inspect what happened.

Every verb is one function ``cmd_*(args) -> exit code``; :data:`COMMANDS`
is the single table from which the parser is built (a test keeps them equal).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from docllm import __version__
from docllm.exceptions import DocllmError, PlatformNotRunningError


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


JSON = arg("--json", action="store_true", help="machine-readable JSON on stdout")

COMMANDS: tuple[Command, ...] = (
    Command(
        ("up",),
        "platform_cmds:cmd_up",
        "run the whole platform locally in the foreground (Ctrl-C stops)",
        (
            arg("--port", type=int, default=8787, help="API port on 127.0.0.1 (0 picks a free one)"),
            arg("--no-auth", action="store_true", help="serve the API without the API key (explicit opt-out)"),
        ),
    ),
    Command(
        ("status",),
        "platform_cmds:cmd_status",
        "queues, in-flight work, DLQ contents with reasons, jobs, recent events",
        (JSON, arg("--events", type=int, default=10, help="how many recent events to show")),
    ),
    Command(
        ("events", "tail"),
        "platform_cmds:cmd_events_tail",
        "print the latest events on the buses",
        (
            JSON,
            arg("-n", type=int, default=20, help="how many events"),
            arg("-f", "--follow", action="store_true", help="keep printing new events"),
        ),
    ),
    Command(
        ("events", "schemas"),
        "platform_cmds:cmd_events_schemas",
        "export the JSON Schemas of every event contract",
        (arg("--out", default="events/schemas", help="output folder"),),
    ),
    Command(
        ("dlq", "redrive"),
        "platform_cmds:cmd_dlq_redrive",
        "move a queue's dead letters back for another try",
        (arg("queue", help="queue name, e.g. IngestQueue"),),
    ),
    Command(("jobs",), "platform_cmds:cmd_jobs", "list training/tokenizer jobs", (JSON,)),
    Command(
        ("ingest",),
        "docs_cmds:cmd_ingest",
        "upload files or folders to the raw bucket and wait until each is processed and searchable",
        (
            arg("paths", nargs="+", help="files or folders (folders are walked recursively)"),
            arg(
                "--service", required=True, help="service/guide name; keys become SERVICE/<path relative to the folder>"
            ),
            arg("--no-wait", action="store_true", help="return once uploaded"),
            arg("--timeout", type=float, default=900, help="seconds to wait for processing"),
            JSON,
        ),
    ),
    Command(
        ("docs",),
        "docs_cmds:cmd_docs",
        "list documents with status, chunk counts and reasons",
        (
            JSON,
            arg("--status", help="only this status (processed, duplicate, quarantined, removed)"),
            arg("--prefix", help="only keys starting with this"),
        ),
    ),
    Command(
        ("chunks",),
        "docs_cmds:cmd_chunks",
        "show a document's chunks",
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
            arg("--k", type=int, default=10, help="number of hits (1-100)"),
            arg("--service", help="only this service"),
            JSON,
        ),
    ),
    Command(
        ("dataset", "build"),
        "pipeline_cmds:cmd_dataset_build",
        "freeze the processed chunks into a dataset version",
        (
            arg("--services", help="comma-separated services (default: all, or the family's)"),
            arg("--family", help="model family whose data filter applies"),
            arg("--no-wait", action="store_true", help="return once requested"),
            arg("--timeout", type=float, default=600, help="seconds to wait"),
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
            arg("--model-family", required=True, help="family name from docllm/training/families.yaml"),
            arg("--no-wait", action="store_true", help="return once requested"),
            arg("--timeout", type=float, default=3600, help="seconds to wait for Model Trained"),
            JSON,
        ),
    ),
    Command(
        ("models",), "pipeline_cmds:cmd_models", "list trained models with their data, tokenizer and losses", (JSON,)
    ),
    Command(
        ("generate",),
        "pipeline_cmds:cmd_generate",
        "continue a prompt with a trained model (local CPU inference)",
        (
            arg("prompt", help="text to continue"),
            arg("--model", required=True, help="model version (docllm models)"),
            arg("--max-tokens", type=int, default=64, help="tokens to generate"),
            arg("--temperature", type=float, default=0.8, help="sampling temperature (0: greedy)"),
            arg("--top-k", type=int, default=50, help="sample from the k most likely tokens"),
            arg("--seed", type=int, default=0, help="sampling seed"),
            JSON,
        ),
    ),
    Command(
        ("eval", "retrieval"),
        "docs_cmds:cmd_eval_retrieval",
        "recall@1/5/10, MRR@10, nDCG@10 on a question set",
        (arg("file", help='JSONL: {"question": ..., "expected_doc_keys": [...]} per line'), JSON),
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docllm",
        description="docllm: your documentation in, your own language models and cited answers out.",
    )
    parser.add_argument("--version", action="version", version=f"docllm {__version__}")
    parser.add_argument("--data-dir", help="local platform state (default: $DOCLLM_DATA_DIR or ./.docllm)")
    subparsers: dict[tuple[str, ...], Any] = {(): parser.add_subparsers(dest="command", metavar="COMMAND")}
    groups: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for cmd in COMMANDS:
        for depth in range(1, len(cmd.path)):
            prefix = cmd.path[:depth]
            if prefix not in groups:
                groups[prefix] = subparsers[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} commands")
                subparsers[prefix] = groups[prefix].add_subparsers(dest=f"sub_{depth}", metavar="SUBCOMMAND")
        p = subparsers[cmd.path[:-1]].add_parser(cmd.path[-1], help=cmd.help, description=cmd.help)
        p.add_argument("--data-dir", default=argparse.SUPPRESS, help="local platform state directory")
        for a in cmd.args:
            p.add_argument(*a.flags, **a.kwargs)
        p.set_defaults(_func=cmd.func)
    return parser


def resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    import importlib

    module, _, name = spec.partition(":")
    func: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(f"docllm.cli.{module}"), name)
    return func


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_func", None):
        parser.print_help()
        return 2
    from docllm.cli.common import console

    try:
        return resolve(args._func)(args)
    except PlatformNotRunningError as e:
        console.print(f"[red]{e}[/red]")
        return 3
    except (DocllmError, FileNotFoundError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
