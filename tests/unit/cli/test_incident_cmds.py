"""``docllm incidents``, ``incident show``, ``incident close`` and RolledBack in ``docllm models``, over a
local platform where an alarm rolled a version back (no ``docllm up``: the close request is handed to
the rollback handler as the runtime would)."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform
from docllm.cli import incident_cmds, model_cmds, pipeline_cmds
from docllm.cli.common import EXIT_FAILED, EXIT_NOT_FOUND, CliError
from docllm.service_layer import rollback
from tests.support.rollback import add_model, alarm_event, deploy_version, local_platform

ALARM = "docllm-dev-serving-ungrounded-rate"


@pytest.fixture
def rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Platform, str]:
    p = local_platform(tmp_path / "data")
    for module in (incident_cmds, model_cmds):
        monkeypatch.setattr(module, "running_platform", lambda args: (p, {}))
    monkeypatch.setattr(rollback, "_sleep", lambda s: None)
    add_model(p, "v1")
    add_model(p, "v2")
    deploy_version(p, "v1")
    deploy_version(p, "v2")
    result = rollback.handle_rollback_event(p, alarm_event(ALARM))
    return p, result["incident"]


def printed(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_incidents_lists_what_was_rolled_back(rolled_back, capsys) -> None:
    _, incident_id = rolled_back
    assert incident_cmds.cmd_incidents(Namespace(json=True, open=False)) == 0
    (row,) = printed(capsys)
    assert row["incident_id"] == incident_id and row["status"] == "open"
    assert (row["bad_version"], row["restored_version"], row["alarm_name"]) == ("v2", "v1", ALARM)

    assert incident_cmds.cmd_incidents(Namespace(json=False, open=True)) == 0
    table = capsys.readouterr().out
    assert incident_id in table and "5/5" in table


def test_incident_show_has_the_timeline_the_datapoints_and_the_versions_links(rolled_back, capsys) -> None:
    _, incident_id = rolled_back
    assert incident_cmds.cmd_incident_show(Namespace(incident_id=incident_id, json=True)) == 0
    shown = printed(capsys)
    assert [e["kind"] for e in shown["timeline"]] == ["alarm", "redeploy", "verify", "registry", "notify", "announce"]
    assert shown["alarms"][0]["datapoints"] == [42.0, 55.5] and set(shown["links"]) == {"v1", "v2"}

    assert incident_cmds.cmd_incident_show(Namespace(incident_id=incident_id, json=False)) == 0
    text = capsys.readouterr().out
    assert "verified" in text and "datapoints 42, 55.5" in text and "announce" in text

    with pytest.raises(CliError) as e:
        incident_cmds.cmd_incident_show(Namespace(incident_id="nope", json=True))
    assert e.value.code == EXIT_NOT_FOUND


def test_incident_close_asks_the_handler_and_shows_the_cause(rolled_back, capsys, monkeypatch) -> None:
    p, incident_id = rolled_back

    def handled(p_: Platform, seq: int, request_id: str, wanted: set[str], **_: Any) -> dict[str, Any] | None:
        # What the runtime does with the request on the bus: the rollback handler closes the incident.
        (request,) = [e.body for e in p_.event_log.since(seq) if e.detail_type == "Incident Close Requested"]
        rollback.handle_rollback_event(p_, request)
        return next(e.body for e in p_.event_log.since(seq) if e.detail_type in wanted)

    monkeypatch.setattr(pipeline_cmds, "_wait_for", handled)
    args = Namespace(incident_id=incident_id, cause="the export lost its tokenizer", closer=None, timeout=5, json=True)

    assert incident_cmds.cmd_incident_close(args) == 0

    closed = printed(capsys)
    assert closed["cause"] == "the export lost its tokenizer" and closed["closed_by"].startswith("local:")
    incident = rollback.load_incident(p, incident_id)
    assert incident is not None and incident.status == "closed"
    with pytest.raises(CliError) as e:
        incident_cmds.cmd_incident_close(args)
    assert e.value.code == EXIT_FAILED and "was closed by" in str(e.value)


def test_models_shows_the_rolled_back_version_with_its_alarm(rolled_back, capsys) -> None:
    _, incident_id = rolled_back
    assert model_cmds.cmd_models(Namespace(json=True, family=None)) == 0
    rows = {r["version"]: r for r in printed(capsys)}
    assert rows["v2"]["status"] == "RolledBack" and rows["v1"]["status"] == "Approved"
    assert rows["v2"]["rolled_back"] == {"alarm": ALARM, "incident_id": incident_id}

    assert model_cmds.cmd_model_show(Namespace(version="v2", json=False)) == 0
    text = capsys.readouterr().out
    assert "RolledBack" in text and ALARM in text and incident_id in text


def test_the_command_table_entries_are_complete() -> None:
    paths = {path for path, _func, _help, _args in incident_cmds.COMMANDS}
    assert paths == {("incidents",), ("incident", "show"), ("incident", "close")}
    for _path, func, help_text, args in incident_cmds.COMMANDS:
        module, name = func.split(":")
        assert module == "incident_cmds" and callable(getattr(incident_cmds, name)) and help_text
        assert all(kwargs.get("help") for _flags, kwargs in args)
