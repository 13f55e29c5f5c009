"""Bad invocations end in one clear line and a non-zero exit code, never a traceback (issue 13).

These need no running platform: every one is refused at the edge, before the platform is looked up
(`tests/integration/cli/` covers the ones that need one: an unknown queue, a missing document).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docllm.cli import common
from docllm.cli import main as cli_main
from docllm.cli.common import EXIT_INTERNAL, EXIT_NOT_FOUND, EXIT_NOT_RUNNING, EXIT_USAGE
from docllm.cli.main import COMMANDS, DOC_STATUSES, main
from tests.conftest import REPO

# (argv after --data-dir, exit code, a fragment of the one line on stderr)
INVALID: list[tuple[list[str], int, str]] = [
    (["up", "--port", "99999"], EXIT_USAGE, "0-65535"),
    (["up", "--port", "-1"], EXIT_USAGE, "0-65535"),
    (["up", "--port", "http"], EXIT_USAGE, "invalid integer"),
    (["docs", "--status", "bogus"], EXIT_USAGE, "invalid choice: 'bogus'"),
    (["ingest", "x", "--service", "../../x"], EXIT_USAGE, "invalid service '../../x'"),
    (["ingest", "x", "--service", ""], EXIT_USAGE, "invalid service ''"),
    (["ingest", "x", "--service", "a/b"], EXIT_USAGE, "invalid service"),
    (["ingest", "x", "--service", ".."], EXIT_USAGE, "invalid service"),
    (["ingest", "x", "--service", "s", "--timeout", "-5"], EXIT_USAGE, "--timeout"),
    (["ingest", "x", "--service", "s", "--timeout", "0"], EXIT_USAGE, "--timeout"),
    (["ingest", "/dev/null", "--service", "s"], EXIT_USAGE, "/dev/null is a character device"),
    (["ingest", "/no/such/folder", "--service", "s"], EXIT_NOT_FOUND, "no such file or folder: /no/such/folder"),
    (["search", "q", "--service", "../x"], EXIT_USAGE, "invalid service"),
    (["search", "q", "--k", "0"], EXIT_USAGE, "--k"),
    (["search", "q", "--k", "101"], EXIT_USAGE, "--k"),
    (["events", "tail", "-n", "0"], EXIT_USAGE, "-n"),
    (["status", "--events", "-3"], EXIT_USAGE, "--events"),
    (["generate", "p", "--model", "m", "--top-k", "0"], EXIT_USAGE, "--top-k"),
    (["generate", "p", "--model", "m", "--temperature", "-1"], EXIT_USAGE, "--temperature"),
    (["generate", "p", "--model", "m", "--temperature", "nan"], EXIT_USAGE, "--temperature"),
    (["generate", "p", "--model", "m", "--max-tokens", "0"], EXIT_USAGE, "--max-tokens"),
    (["generate", "p", "--model", "m", "--max-tokens", "100000"], EXIT_USAGE, "--max-tokens"),
    (["train", "--model-family", "nope"], EXIT_USAGE, "unknown model family 'nope'; known: "),
    (["dataset", "build", "--family", "nope"], EXIT_USAGE, "unknown model family 'nope'"),
    (["dataset", "build", "--services", "s3,../etc"], EXIT_USAGE, "invalid service '../etc'"),
    (["ingest"], EXIT_USAGE, "required"),
    (["frobnicate"], EXIT_USAGE, "invalid choice"),
    (["status"], EXIT_NOT_RUNNING, "docllm up --data-dir"),
    (["chunks", "s3/a.md"], EXIT_NOT_RUNNING, "not running"),
]


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "code", "fragment"), INVALID, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_an_invalid_invocation_says_why_in_one_line(tmp_path, capsys, argv, code, fragment):
    got, out, err = run(capsys, ["--data-dir", str(tmp_path / "data"), *argv])
    assert got == code, err
    assert "Traceback" not in out + err
    assert fragment in one_line(err)
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "code", "fragment"), INVALID, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_under_json_an_invalid_invocation_prints_a_json_error_on_stdout(tmp_path, capsys, argv, code, fragment):
    got, out, err = run(capsys, ["--data-dir", str(tmp_path / "data"), *argv, "--json"])
    assert got == code, err
    assert fragment in json.loads(out)["error"]
    assert "Traceback" not in err


def test_a_file_given_as_the_data_directory_is_refused(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for verb in (["up"], ["status"], ["docs", "--json"]):
        code, _, err = run(capsys, ["--data-dir", str(a_file), *verb])
        assert code == EXIT_USAGE
        assert f"--data-dir {a_file} is not a directory" in one_line(err)


@pytest.mark.parametrize("where", ["/proc/docllm-nowhere/data", "/proc"])
def test_a_data_directory_that_cannot_be_written_is_refused_by_up(capsys, where):
    code, _, err = run(capsys, ["--data-dir", where, "up", "--port", "0"])
    assert code == EXIT_USAGE
    assert "data directory" in one_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_a_read_only_data_directory_is_refused_by_up(tmp_path, capsys):
    d = tmp_path / "ro"
    d.mkdir(mode=0o500)
    code, _, err = run(capsys, ["--data-dir", str(d), "up"])
    assert code == EXIT_USAGE
    assert "is not writable" in one_line(err)


@pytest.mark.parametrize("group", sorted({c.path[0] for c in COMMANDS if len(c.path) > 1}))
def test_a_group_without_its_subcommand_prints_that_groups_help_and_exits_2(capsys, group):
    code, out, err = run(capsys, [group])
    assert code == EXIT_USAGE
    subcommands = [c.path[1] for c in COMMANDS if c.path[0] == group]
    assert f"usage: docllm {group}" in err
    assert all(s in err for s in subcommands)
    assert "ingest" not in err  # not the top-level help
    assert out == ""


def test_no_command_at_all_prints_the_top_level_help_and_exits_2(capsys):
    code, _, err = run(capsys, [])
    assert code == EXIT_USAGE and "usage: docllm" in err and "ingest" in err


def test_an_unexpected_error_is_one_line_with_a_hint_and_a_traceback_only_when_asked(tmp_path, capsys, monkeypatch):
    def boom(_args):
        raise ZeroDivisionError("the bug")

    monkeypatch.setattr(cli_main, "resolve", lambda _spec: boom)
    code, _, err = run(capsys, ["--data-dir", str(tmp_path), "status"])
    assert code == EXIT_INTERNAL
    line = one_line(err)
    assert "ZeroDivisionError: the bug" in line and "DOCLLM_DEBUG=1" in line
    code, out, _ = run(capsys, ["--data-dir", str(tmp_path), "status", "--json"])
    assert code == EXIT_INTERNAL and "the bug" in json.loads(out)["error"]
    monkeypatch.setenv("DOCLLM_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["--data-dir", str(tmp_path), "status"])


def test_help_shows_defaults_and_the_model_families(capsys):
    from docllm.training.families import load_families

    for argv, expected in (
        (["ingest", "--help"], ["(default: 900", "--follow-links"]),
        (["dataset", "build", "--help"], ["(default: 600", *sorted(load_families())]),
        (["train", "--help"], ["(default: 3600", *sorted(load_families())]),
        (["generate", "--help"], ["(default: 64)", "(default: 0.8)", "(default: 50)"]),
        (["up", "--help"], ["(default: 8787)"]),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert all(e in text for e in expected), (argv, text)


def test_the_status_choices_are_the_records_statuses():
    import typing

    from docllm.records import DocumentStatus

    assert typing.get_args(DocumentStatus) == DOC_STATUSES


def test_the_service_rule():
    for good in ("s3", "cloudwatch", "AmazonS3", "api-gateway", "v2.1", "a_b"):
        assert common.check_service(good) == good
    for bad in ("", ".", "..", "../x", "a/b", "-x", ".hidden", "a b", "x" * 65, "s3\n", "é"):
        with pytest.raises(Exception, match="invalid service"):
            common.check_service(bad)


def test_json_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`docllm … --json | head -0`: the reader is gone before the first byte; no traceback, no noise."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(tmp_path), "status", "--json"],
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            check=False,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == common.EXIT_BROKEN_PIPE


def test_the_exit_codes_are_the_documented_ones():
    text = (Path(REPO) / "docs" / "cli.md").read_text(encoding="utf-8")
    for code in (0, 1, 2, 3, 4, 70, 130, 141):
        assert f"| {code} |" in text
