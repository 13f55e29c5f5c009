"""``docllm canary set|unset|run|runs`` (docllm.cli.canary_cmds) over a local platform, without ``docllm up``."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pytest

from docllm.bootstrap import Platform
from docllm.cli import canary_cmds
from docllm.cli.common import EXIT_NOT_FOUND, EXIT_USAGE, CliError
from docllm.exceptions import NotFoundError
from docllm.monitoring.canary import CANARY_SET_KEY
from tests.unit.answers.fakes import FakeEngine
from tests.unit.service_layer.test_canary_run import OPERATOR_SET, deployed, extractive, platform


@pytest.fixture
def p(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    found, _ = platform(tmp_path / "data", FakeEngine(extractive))
    monkeypatch.setattr(canary_cmds, "running_platform", lambda args: (found, {}))
    return found


def printed(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_set_checks_the_file_and_uploads_it_where_the_canary_reads_it(
    p: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "canary.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in OPERATOR_SET))
    assert canary_cmds.cmd_canary_set(Namespace(file=str(good), json=True)) == 0
    assert printed(capsys) == {
        "uploaded": f"s3://{p.settings.raw_bucket}/{CANARY_SET_KEY}", "questions": 4, "answer": 3, "abstain": 1,
    }  # fmt: skip
    assert p.objects.get(p.settings.raw_bucket, CANARY_SET_KEY) == good.read_bytes()

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "How?", "expect": "answer"}\n')
    with pytest.raises(CliError) as e:
        canary_cmds.cmd_canary_set(Namespace(file=str(bad), json=True))
    assert e.value.code == EXIT_USAGE and "bad.jsonl:1:" in str(e.value)

    assert canary_cmds.cmd_canary_unset(Namespace(json=True)) == 0
    with pytest.raises(NotFoundError):
        p.objects.head(p.settings.raw_bucket, CANARY_SET_KEY)
    with pytest.raises(CliError) as e:
        canary_cmds.cmd_canary_unset(Namespace(json=True))
    assert e.value.code == EXIT_NOT_FOUND


def test_run_measures_now_and_runs_lists_it(p: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    deployed(p)
    body = "".join(json.dumps(r) + "\n" for r in OPERATOR_SET).encode()
    p.objects.put(p.settings.raw_bucket, CANARY_SET_KEY, body)

    assert canary_cmds.cmd_canary_run(Namespace(target=None, json=True)) == 0
    run = printed(capsys)
    assert isinstance(run, dict) and run["accuracy"] == 100.0 and run["trigger"] == "docllm.cli"

    assert canary_cmds.cmd_canary_runs(Namespace(target="local", limit=10, json=True)) == 0
    listed = printed(capsys)
    assert isinstance(listed, dict) and [r["run_id"] for r in listed["runs"]] == [run["run_id"]]


def test_run_with_nothing_deployed_says_so(p: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CliError) as e:
        canary_cmds.cmd_canary_run(Namespace(target=None, json=True))
    assert e.value.code == EXIT_NOT_FOUND and "nothing is deployed" in str(e.value)
