"""The local CloudWatch: metrics put -> tick -> "CloudWatch Alarm State Change" on the default bus ->
routed by the template's rule, with the shape of AWS's own samples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import docllm.adapters.local.metrics as local_metrics
from docllm.bootstrap import Platform
from docllm.events.envelope import BusEvent
from docllm.exceptions import TransientError
from docllm.monitoring.alarms import AlarmStateChangeDetail, ReasonData
from docllm.monitoring.definitions import local_alarms
from docllm.monitoring.evaluator import AlarmStore, LocalAlarmEvaluator
from docllm.ports.bus import EventBus
from docllm.settings import Settings
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "monitoring" / "template.yaml"
T0 = 1_800_000_000.0  # a period boundary for 10 s periods
RATE = "docllm-dev-serving-5xx-rate"
TARGET = {"Target": "local"}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(local_metrics, "time", c)  # the sink stamps values with this clock
    return c


@pytest.fixture
def p(tmp_path: Path) -> Iterator[Platform]:
    settings = Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path / "data")})
    yield Platform(settings, template=FIXTURE)


def evaluator(p: Platform, **kwargs: Any) -> LocalAlarmEvaluator:
    return LocalAlarmEvaluator(p, local_alarms(p).alarms, **kwargs)


def answers(p: Platform, clock: Clock, at: float, *, requests: int, errors: int, version: str | None = None) -> None:
    """``requests`` answers at ``at``, ``errors`` of them 5xx, on both dimension sets as the API puts them."""
    clock.now = at
    sets = [TARGET] + ([{**TARGET, "Family": "tiny-s3", "Version": version}] if version else [])
    for dims in sets:
        p.metrics.put("AskRequests", requests, dimensions=dims, resolution=1)
        p.metrics.put("AskServerErrors", errors, dimensions=dims, resolution=1)
    p.metrics.flush()


def rollback_messages(p: Platform) -> list[dict[str, Any]]:
    msgs = p.local_queue.receive("RollbackQueue", max_messages=10)
    return [json.loads(m.body) for m in msgs]


def test_an_error_burst_fires_the_alarm_and_its_event_reaches_the_rollback_queue(p: Platform, clock: Clock) -> None:
    ev = evaluator(p)
    # First evaluation: no data, missing treated as not breaching -> OK (announced, as CloudWatch does).
    first = {t.alarm: t.current.value for t in ev.tick(T0)}
    assert first[RATE] == "OK"
    rollback_messages(p)  # the OK announcements: not what this test is about
    answers(p, clock, T0 + 1, requests=10, errors=5)
    assert RATE not in {t.alarm for t in ev.tick(T0 + 9)}  # its period is still open
    assert RATE not in {t.alarm for t in ev.tick(T0 + 11)}  # 1 of 3 breaching: M is 2
    answers(p, clock, T0 + 12, requests=10, errors=3)
    (fired,) = [t for t in ev.tick(T0 + 21) if t.alarm == RATE]
    assert (fired.previous.value, fired.current.value) == ("OK", "ALARM")
    assert "2 out of the last 2 datapoints [30.0 (" in fired.current.reason
    (body,) = rollback_messages(p)
    assert body["source"] == "aws.cloudwatch" and body["detail-type"] == "CloudWatch Alarm State Change"
    detail = AlarmStateChangeDetail.model_validate(body["detail"])
    assert detail.alarm_name == RATE and detail.state.value == "ALARM" and detail.previous_state.value == "OK"
    reason = detail.state.parsed_reason_data()
    assert reason is not None and reason.recent_datapoints == [50.0, 30.0] and reason.threshold == 5.0
    logged = [e for e in p.event_log.last(20) if e.source == "aws.cloudwatch" and e.body["detail"]["alarmName"] == RATE]
    assert logged[-1].bus == "default" and logged[-1].targets == ["RollbackQueue"]
    # The errors stop. CloudWatch looks back over its evaluation range (N + 2 periods here) for real
    # datapoints before it fills in missing ones: the two breaching ones keep it in ALARM until one leaves it.
    assert RATE not in {t.alarm for t in ev.tick(T0 + 51)}
    (back,) = [t for t in ev.tick(T0 + 61) if t.alarm == RATE]
    assert back.current.value == "OK"


def test_a_bad_version_fires_its_own_instance_while_the_target_aggregate_stays_quiet(p: Platform, clock: Clock) -> None:
    ev = evaluator(p)
    ev.tick(T0)
    rollback_messages(p)
    for at in (T0 + 1, T0 + 11):  # the stable version: 95 good answers a period; the canary: 5, all failing
        answers(p, clock, at, requests=95, errors=0, version="v1")
        clock.now = at
        canary = {**TARGET, "Family": "tiny-s3", "Version": "v2"}
        p.metrics.put("AskRequests", 5, dimensions=canary, resolution=1)
        p.metrics.put("AskServerErrors", 5, dimensions=canary, resolution=1)
        p.metrics.put("AskRequests", 5, dimensions=TARGET, resolution=1)
        p.metrics.put("AskServerErrors", 5, dimensions=TARGET, resolution=1)
        p.metrics.flush()
    changes = {t.alarm: t.current.value for t in ev.tick(T0 + 21)}
    assert changes.get(f"{RATE}@v2") == "ALARM" and changes.get(f"{RATE}@v1") == "OK"
    assert RATE not in changes  # 5 % of the target's answers failed: not above the 5 % threshold
    bodies = {b["detail"]["alarmName"]: b for b in rollback_messages(p)}
    instance = AlarmStateChangeDetail.model_validate(bodies[f"{RATE}@v2"]["detail"])
    dims = {m.id: m.metric_stat.metric.dimensions for m in instance.configuration.metrics if m.metric_stat}
    assert dims["errors"] == {"service": "docllm", "Target": "local", "Family": "tiny-s3", "Version": "v2"}
    assert bodies[f"{RATE}@v2"]["resources"] == [f"arn:aws:cloudwatch:local:000000000000:alarm:{RATE}@v2"]
    # v2 is rolled back and gets no more traffic: its instance is evaluated until its missing data brings it
    # back (once a breaching datapoint has left the evaluation range), then no more.
    assert f"{RATE}@v2" not in {t.alarm for t in ev.tick(T0 + 51)}
    changes = {t.alarm: t.current.value for t in ev.tick(T0 + 61)}
    assert changes.get(f"{RATE}@v2") == "OK"
    assert ev.tick(T0 + 71) == [] and ev.tick(T0 + 200) == []
    assert AlarmStore(p.data_dir / "alarms.db").get(f"{RATE}@v2").state.value == "OK"  # type: ignore[union-attr]


def test_states_survive_a_restart_and_a_transition_is_announced_once(p: Platform, clock: Clock) -> None:
    ev = evaluator(p)
    ev.tick(T0)
    answers(p, clock, T0 + 1, requests=1, errors=1)
    answers(p, clock, T0 + 11, requests=1, errors=1)
    assert RATE in {t.alarm for t in ev.tick(T0 + 21)}
    again = evaluator(Platform(p.settings, template=FIXTURE))  # a new process over the same data directory
    assert again.tick(T0 + 22) == []
    stored = AlarmStore(p.data_dir / "alarms.db")
    status = stored.get(RATE)
    assert status is not None and status.state.value == "ALARM"
    assert [h.value for h in stored.history(RATE)] == ["ALARM", "OK"]


class RefusingBus(EventBus):
    def __init__(self) -> None:
        self.refuse = True
        self.got: list[BusEvent] = []

    def publish(self, events: Any) -> None:
        if self.refuse:
            raise TransientError("the bus is down")
        self.got.extend(events)


def test_an_event_the_bus_refused_goes_out_on_the_next_tick(p: Platform, clock: Clock) -> None:
    bus = RefusingBus()
    ev = evaluator(p, bus=bus)
    assert {t.alarm for t in ev.tick(T0)} >= {RATE}  # transitions stand even though the bus refused
    assert bus.got == [] and AlarmStore(p.data_dir / "alarms.db").pending_events()
    bus.refuse = False
    assert ev.tick(T0 + 1) == []
    assert {e.detail["alarmName"] for e in bus.got} >= {RATE}
    assert AlarmStore(p.data_dir / "alarms.db").pending_events() == []


def test_a_drift_alarm_notifies_without_reaching_the_rollback_queue_and_has_no_version_instances(
    p: Platform, clock: Clock
) -> None:
    ev = evaluator(p)
    ev.tick(T0)
    rollback_messages(p)
    clock.now = T0 + 1
    for dims in (TARGET, {**TARGET, "Family": "tiny-s3", "Version": "v1"}):
        p.metrics.put("DriftOovRate", 60.0, unit="Percent", dimensions=dims)
    p.metrics.flush()
    changes = {t.alarm: t.current.value for t in ev.tick(T0 + 11)}
    assert changes == {"docllm-dev-drift-oov-rate": "ALARM"}
    assert rollback_messages(p) == []
    assert p.event_log.last(1)[0].body["detail"]["alarmName"] == "docllm-dev-drift-oov-rate"


SAMPLES = ("cloudwatch-alarm-state-change-single-metric.json", "cloudwatch-alarm-state-change-metric-math.json")


def test_our_events_have_the_shape_of_cloudwatchs_real_samples(p: Platform, clock: Clock, real_events_dir) -> None:
    ev = evaluator(p)
    ev.tick(T0)
    clock.now = T0 + 1
    p.metrics.put("AskLatency", 5000.0, unit="Milliseconds", dimensions=TARGET, resolution=1)
    p.metrics.flush()
    answers(p, clock, T0 + 2, requests=2, errors=2)
    answers(p, clock, T0 + 12, requests=2, errors=2)
    clock.now = T0 + 12
    p.metrics.put("AskLatency", 5000.0, unit="Milliseconds", dimensions=TARGET, resolution=1)
    p.metrics.flush()
    ours = {t.alarm: t.event.to_wire() for t in ev.tick(T0 + 21)}
    single, math = ours["docllm-dev-serving-p99-latency"], ours[RATE]
    real = [json.loads((real_events_dir / "awsdocs" / name).read_text()) for name in SAMPLES]
    for event in (*real, single, math):
        detail = AlarmStateChangeDetail.model_validate(event["detail"])  # one model parses them all
        for state in (detail.state, detail.previous_state):
            if state.reason_data:
                ReasonData.model_validate_json(state.reason_data)
    for mine, theirs in ((single, real[0]), (math, real[1])):
        assert set(mine) == set(theirs)
        assert set(mine["detail"]) == set(theirs["detail"])
        assert set(mine["detail"]["state"]) == set(theirs["detail"]["state"])
        for m_metric, t_metric in zip(
            mine["detail"]["configuration"]["metrics"], theirs["detail"]["configuration"]["metrics"], strict=False
        ):
            if "metricStat" in m_metric and "metricStat" in t_metric:
                assert set(m_metric["metricStat"]) == set(t_metric["metricStat"])
                assert set(m_metric["metricStat"]["metric"]) == set(t_metric["metricStat"]["metric"])
        theirs_reason = set(json.loads(theirs["detail"]["state"]["reasonData"]))
        mine_reason = set(json.loads(mine["detail"]["state"]["reasonData"]))
        assert theirs_reason <= mine_reason <= theirs_reason | {"evaluatedDatapoints"}
    assert json.loads(single["detail"]["state"]["reasonData"])["statistic"] == "p99"
