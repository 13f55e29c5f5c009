"""The real "CloudWatch Alarm State Change" samples (AWS's documented EventBridge events, and the
payloads CloudWatch sends a Lambda alarm action, from Powertools' fixtures) drive the rollback handler.

As published they are someone else's alarms: ignored. With our alarm's name, our ``Target`` dimension
and a state time after our deployments (everything else as AWS wrote it: reasons, reasonData,
metric-math expressions, composite rules) they roll the serving version back.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from docllm.service_layer import deploy, rollback
from docllm.service_layer.rollback import handle_rollback_event, incidents
from tests.conftest import load_json
from tests.support.rollback import add_model, deploy_version, events_of, local_platform, now_stamp

EVENTBRIDGE = [
    "cloudwatch-alarm-state-change-single-metric.json",
    "cloudwatch-alarm-state-change-metric-math.json",
    "cloudwatch-alarm-state-change-anomaly-detection.json",
    "cloudwatch-alarm-state-change-composite-suppressor.json",
]
LAMBDA_ACTION = ["cloudWatchAlarmEventSingleMetric.json", "cloudWatchAlarmEventCompositeMetric.json"]
OURS = "docllm-dev-serving-5xx-rate"


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollback, "_sleep", lambda s: None)


def _ours(alarm: dict[str, Any]) -> None:
    """Our alarm name, our Target dimension on every metric, the state's time now."""
    alarm["alarmName"] = OURS
    for metric in (alarm.get("configuration") or {}).get("metrics") or []:
        stat = metric.get("metricStat")
        if stat is not None:
            stat["metric"]["dimensions"] = {"Target": "local", "service": "docllm"}
    alarm["state"]["timestamp"] = now_stamp()


def _platform(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = local_platform(tmp_path / "data")
    add_model(p, "v1")
    add_model(p, "v2")
    deploy_version(p, "v1")
    deploy_version(p, "v2")
    return p


@pytest.mark.parametrize("name", EVENTBRIDGE)
def test_a_documented_alarm_event_of_someone_elses_alarm_is_ignored(real_events_dir, tmp_path, name):
    p = _platform(tmp_path)
    result = handle_rollback_event(p, load_json(real_events_dir / "awsdocs" / name))
    assert result["outcome"].startswith("ignored") and incidents(p) == []


@pytest.mark.parametrize("name", EVENTBRIDGE)
def test_a_documented_alarm_event_of_our_serving_alarm_rolls_back(real_events_dir, tmp_path, name):
    p = _platform(tmp_path)
    event = copy.deepcopy(load_json(real_events_dir / "awsdocs" / name))
    _ours(event["detail"])

    result = handle_rollback_event(p, event)

    assert result["outcome"] == "rolled back" and (result["bad_version"], result["restored_version"]) == ("v2", "v1")
    assert (p.state.get(deploy.ENDPOINTS_PK, "local") or {})["model_version"] == "v1"
    (incident,) = incidents(p)
    (alarm,) = incident.alarms
    assert alarm.event_id == event["id"] and alarm.reason == event["detail"]["state"]["reason"]
    if "recentDatapoints" in event["detail"]["state"].get("reasonData", ""):
        assert alarm.datapoints  # the metrics around the alarm, as CloudWatch evaluated them
    assert len(events_of(p, "Model Rolled Back")) == 1


@pytest.mark.parametrize("name", LAMBDA_ACTION)
def test_an_alarm_action_payload_drives_the_same_handler(real_events_dir, tmp_path, name):
    p = _platform(tmp_path)
    payload = load_json(real_events_dir / "powertools-lambda-python" / name)
    assert handle_rollback_event(p, payload)["outcome"].startswith("ignored")

    ours = copy.deepcopy(payload)
    _ours(ours["alarmData"])
    result = handle_rollback_event(p, ours)

    assert result["outcome"] == "rolled back" and result["restored_version"] == "v1"
