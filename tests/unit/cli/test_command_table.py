"""The parser is built from the command table, and every verb resolves to a function."""

from __future__ import annotations

import pytest

from docllm.cli.main import COMMANDS, build_parser, main, resolve


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c.path))
def test_every_command_in_the_table_parses_and_resolves(cmd):
    required = {
        ("ingest",): ["x", "--service", "s"],
        ("chunks",): ["d"],
        ("search",): ["q"],
        ("eval", "retrieval"): ["f"],
        ("dlq", "redrive"): ["Q"],
        ("dlq", "purge"): ["Q"],
        ("dataset", "show"): ["v"],
        ("dataset", "diff"): ["a", "b"],
        ("train",): ["--model-family", "tiny-s3"],
        ("generate",): ["hello", "--model", "m"],
        ("model", "show"): ["m"],
        ("approve",): ["m", "--reason", "r"],
        ("reject",): ["m", "--reason", "r"],
        ("eval", "run"): ["m"],
        ("benchmarks", "add"): ["f"],
        ("lineage",): ["m"],
        ("manifest", "verify"): ["m"],
        ("manifest", "show"): ["m"],
        ("ask",): ["how?"],
        ("deploy",): ["m"],
        ("incident", "show"): ["i"],
        ("incident", "close"): ["i", "--cause", "c"],
        ("canary", "set"): ["f"],
        ("pipeline", "run"): ["tiny-s3"],
        ("retriever", "show"): ["enc-0123456789ab"],
        ("retriever", "verify"): ["enc-0123456789ab"],
        ("pipeline", "cancel"): ["tiny-s3"],
    }
    argv = [*cmd.path, *required.get(cmd.path, [])]
    args = build_parser().parse_args(argv)
    assert args._func == cmd.func
    assert callable(resolve(cmd.func))


def test_every_command_has_help_text():
    assert all(c.help and all(a.kwargs.get("help") for a in c.args) for c in COMMANDS)


def test_a_command_that_needs_the_platform_says_how_to_start_it(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path), "status"]) == 4  # EXIT_NOT_RUNNING (docs/cli.md)
    assert "docllm up" in capsys.readouterr().err.replace("\n", " ")
