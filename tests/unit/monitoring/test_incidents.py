"""The incident model: stored as a head and added entries, read back as one incident."""

from __future__ import annotations

import json

import pytest

from docllm.monitoring.incidents import (
    IncidentHead,
    TimelineEntry,
    alarm_dimension,
    alarm_key,
    alarm_record,
    assemble,
    assemble_all,
    closed_key,
    incident_id,
    parse_serving_alarm,
    parse_time,
    step_key,
    steps_of,
)

T0 = "2025-03-01T10:00:00.000000+00:00"


def head(**changes: object) -> IncidentHead:
    fields: dict[str, object] = {
        "incident_id": "abc",
        "target": "local",
        "family": "tiny",
        "bad_version": "v2",
        "restored_version": "v1",
        "action": "redeploy",
        "severity": "warning",
        "alarm_name": "docllm-dev-serving-5xx-rate",
        "opened_at": T0,
        "summary": "5xx on v2",
    }
    return IncidentHead.model_validate({**fields, **changes})


def entry(at: str, kind: str, **changes: object) -> dict[str, object]:
    return TimelineEntry.model_validate({"at": at, "kind": kind, "summary": kind, **changes}).model_dump(mode="json")


def test_an_incident_is_its_head_and_its_entries_in_time_order():
    items = [
        ("abc", head().model_dump(mode="json")),
        (
            step_key("abc", "verify"),
            entry("2025-03-01T10:00:02+00:00", "verify", step="verify", detail={"observed": "v1"}),
        ),
        (step_key("abc", "redeploy"), entry("2025-03-01T10:00:01+00:00", "redeploy", step="redeploy")),
    ]
    incident = assemble(items)
    assert incident.steps_done == ["redeploy", "verify"] and incident.next_step == "registry"
    assert incident.verification == {"ok": True, "at": "2025-03-01T10:00:02+00:00", "observed": "v1"}
    assert [e.kind for e in incident.timeline] == ["redeploy", "verify"]


def test_steps_written_in_the_same_instant_keep_their_order():
    items = [("abc", head().model_dump(mode="json"))] + [
        (step_key("abc", s), entry(T0, s, step=s)) for s in ("announce", "notify", "registry", "verify", "redeploy")
    ]
    assert assemble(items).steps_done == ["redeploy", "verify", "registry", "notify", "announce"]


def test_a_raised_severity_and_a_closing_entry_show_in_the_incident():
    items = [
        ("abc", head().model_dump(mode="json")),
        ("abc#note#1", entry("2025-03-01T10:00:05+00:00", "verification-failed", severity="page")),
        (
            closed_key("abc"),
            entry("2025-03-01T11:00:00+00:00", "closed", detail={"cause": "bad export", "closed_by": "local:bo"}),
        ),
    ]
    incident = assemble(items)
    assert incident.severity == "page" and incident.status == "closed"
    assert (incident.cause, incident.closed_by, incident.closed_at) == (
        "bad export",
        "local:bo",
        "2025-03-01T11:00:00+00:00",
    )
    assert incident.verification == {"ok": False, "at": "2025-03-01T10:00:05+00:00"}


def test_a_superseded_incident_has_nothing_left_to_do():
    items = [
        ("abc", head().model_dump(mode="json")),
        ("abc#superseded", entry(T0, "superseded", severity="page")),
    ]
    incident = assemble(items)
    assert incident.superseded and incident.next_step is None and incident.severity == "page"


def test_what_each_kind_of_incident_does():
    assert steps_of("redeploy") == ("redeploy", "verify", "registry", "notify", "announce")
    assert steps_of("abort_canary") == steps_of("redeploy")
    assert steps_of("none") == ("notify",) and steps_of("redeploy", stale=True) == ()


def test_incidents_are_listed_newest_first_and_half_written_ones_left_out():
    older = head(incident_id="a1", opened_at="2025-03-01T09:00:00+00:00")
    newer = head(incident_id="b2", opened_at="2025-03-02T09:00:00+00:00")
    items = [
        ("a1", older.model_dump(mode="json")),
        ("b2", newer.model_dump(mode="json")),
        ("c3#alarm#x", entry(T0, "alarm")),  # an entry without its head
    ]
    assert [i.incident_id for i in assemble_all(items)] == ["b2", "a1"]
    with pytest.raises(KeyError):
        assemble([("c3#alarm#x", entry(T0, "alarm"))])


def test_the_id_names_one_bad_deployment_and_alarm_keys_one_state_change():
    assert incident_id("local", "v2", "d1@t") == incident_id("local", "v2", "d1@t")
    assert (
        len(
            {
                incident_id("local", "v2", "d1@t"),
                incident_id("sagemaker", "v2", "d1@t"),
                incident_id("local", "v3", "d1@t"),
            }
        )
        == 3
    )
    detail = {"alarmName": "a", "state": {"value": "ALARM", "timestamp": "2025-03-01T10:00:00.000+0000"}}
    ok = {"alarmName": "a", "state": {"value": "OK", "timestamp": "2025-03-01T10:00:00.000+0000"}}
    assert (
        alarm_key("i", alarm_record(detail)) == alarm_key("i", alarm_record(detail)) != alarm_key("i", alarm_record(ok))
    )


def test_an_alarm_record_keeps_the_datapoints_cloudwatch_evaluated():
    detail = {
        "alarmName": "docllm-dev-serving-p99-latency",
        "state": {
            "value": "ALARM",
            "reason": "Threshold Crossed",
            "timestamp": "2025-03-01T10:00:00.000+0000",
            "reasonData": json.dumps(
                {
                    "startDate": "2025-03-01T09:59:30.000+0000",
                    "period": 10,
                    "recentDatapoints": [900.0, 1200.5, 3000],
                    "threshold": 800.0,
                }
            ),
        },
        "configuration": {
            "metrics": [
                {
                    "id": "m1",
                    "metricStat": {
                        "metric": {"name": "AskLatency", "dimensions": {"Target": "local"}},
                        "stat": "p99",
                        "period": 10,
                    },
                }
            ]
        },
    }
    record = alarm_record(detail, event_id="e1")
    assert record.datapoints == [900.0, 1200.5, 3000.0] and record.threshold == 800.0 and record.period_s == 10
    assert record.window_start == "2025-03-01T09:59:30.000+0000" and record.event_id == "e1"
    assert record.metrics == [
        {"id": "m1", "name": "AskLatency", "dimensions": {"Target": "local"}, "stat": "p99", "period": 10}
    ]
    broken = {**detail, "state": {**detail["state"], "reasonData": "not json"}}
    assert alarm_record(broken).datapoints == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("docllm-dev-serving-5xx-rate", ("5xx-rate", None)),
        ("docllm-dev-serving-canary-accuracy@tiny-s3-20250101-0001", ("canary-accuracy", "tiny-s3-20250101-0001")),
        ("docllm-dev-drift-low-score", None),
        ("docllm-prod-serving-5xx-rate", None),
        ("docllm-dev-serving-", None),
    ],
)
def test_serving_alarm_names_are_recognised_with_their_version(name, expected):
    parsed = parse_serving_alarm(name, "dev")
    assert (None if parsed is None else (parsed.kind, parsed.version)) == expected


def test_the_target_of_a_metric_math_alarm_comes_from_its_metrics():
    config = {
        "metrics": [
            {"id": "e1", "expression": "100*m1/m2"},
            {"id": "m1", "metricStat": {"metric": {"dimensions": {"Target": "local", "service": "docllm"}}}},
            {"id": "m2", "metricStat": {"metric": {"dimensions": {"Target": "local", "service": "docllm"}}}},
        ]
    }
    assert alarm_dimension(config, "Target") == ["local"]
    assert alarm_dimension({"alarmRule": "ALARM(a)"}, "Target") == []


@pytest.mark.parametrize(
    "text",
    [
        "2019-10-02T17:04:40.989+0000",
        "2019-10-02T17:04:40.989Z",
        "2019-10-02T17:04:40.989+00:00",
        "2019-10-02T19:04:40.989+0200",
    ],
)
def test_times_in_every_spelling_aws_and_docllm_use_compare_alike(text):
    assert parse_time(text) == parse_time("2019-10-02T17:04:40.989Z")
