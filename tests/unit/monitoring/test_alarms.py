"""CloudWatch alarm semantics: the transitions CloudWatch's documentation implies.

The two tables are those of the AWS CloudWatch user guide, "Configuring how CloudWatch alarms
treat missing data", section "How alarm state is evaluated when data is missing"
(docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarms-and-missing-data.html): the five
most recent datapoints of a 5-minute alarm, oldest on the left, ``0`` not breaching, ``X``
breaching, ``-`` missing; the state for each ``TreatMissingData`` setting ("retain" = the current
state is kept). Table 1: Datapoints to Alarm = Evaluation Periods = 3; table 2: 2 out of 3.
"""

from __future__ import annotations

import json

import pytest

from docllm.monitoring.alarms import (
    AlarmDefinition,
    AlarmState,
    Sample,
    UnsupportedAlarmError,
    aggregate,
    evaluate,
    percentile,
    state_change_event,
)

PERIOD = 300
NOW = 1_700_000_100.0  # 100 s into a 5-minute period: the five before it are closed
END_MS = int(NOW * 1000) - int(NOW * 1000) % (PERIOD * 1000)


def alarm(m: int, n: int = 3, treat: str = "missing", **extra: object) -> AlarmDefinition:
    props = {
        "AlarmName": "docllm-dev-test",
        "Namespace": "docllm",
        "MetricName": "AskLatency",
        "Dimensions": [{"Name": "Target", "Value": "local"}],
        "Statistic": "Maximum",
        "Period": PERIOD,
        "EvaluationPeriods": n,
        "DatapointsToAlarm": m,
        "Threshold": 50,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": treat,
        **extra,
    }
    return AlarmDefinition.from_cfn(props)


def series(points: str) -> list[Sample]:
    """``"0 - X - X"`` as samples, one per period, the last one in the most recent closed period."""
    marks = points.split()
    start = END_MS - len(marks) * PERIOD * 1000
    values = {"0": 10.0, "X": 90.0}
    return [Sample(start + i * PERIOD * 1000 + 1000, values[c]) for i, c in enumerate(marks) if c != "-"]


# (data points, M, state for missing, ignore, breaching, notBreaching)
DOCUMENTED = [
    # Table 1: 3 out of 3
    ("0 - X - X", 3, "OK", "OK", "OK", "OK"),
    ("0 - - - -", 3, "OK", "OK", "OK", "OK"),
    ("- - - - -", 3, "INSUFFICIENT_DATA", "retain", "ALARM", "OK"),
    ("0 X X - X", 3, "ALARM", "ALARM", "ALARM", "ALARM"),
    ("- - - - X", 3, "INSUFFICIENT_DATA", "retain", "ALARM", "OK"),
    ("X - - - -", 3, "ALARM", "retain", "ALARM", "OK"),
    # Table 2: 2 out of 3
    ("0 - X - X", 2, "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 0 X 0 X", 2, "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 - X - -", 2, "OK", "OK", "ALARM", "OK"),
    ("- - - - 0", 2, "OK", "OK", "ALARM", "OK"),
    ("- - - - X", 2, "INSUFFICIENT_DATA", "retain", "ALARM", "OK"),
]


@pytest.mark.parametrize(("points", "m", "missing", "ignore", "breaching", "not_breaching"), DOCUMENTED)
@pytest.mark.parametrize("current", ["OK", "ALARM"])
def test_the_documented_missing_data_tables_give_the_documented_states(
    points: str, m: int, missing: str, ignore: str, breaching: str, not_breaching: str, current: str
) -> None:
    previous = AlarmState(value=current, reason="before", timestamp=AlarmState.initial(0).timestamp)  # type: ignore[arg-type]
    expected = {"missing": missing, "ignore": ignore, "breaching": breaching, "notBreaching": not_breaching}
    for treat, want in expected.items():
        got = evaluate(alarm(m, treat=treat), series(points), NOW, previous=previous)
        assert got.value == (current if want == "retain" else want), (points, m, treat)


def test_a_kept_state_keeps_its_reason_and_timestamp() -> None:
    d = alarm(3, treat="notBreaching")
    first = evaluate(d, series("X X X X X"), NOW)
    again = evaluate(d, series("X X X X X"), NOW + 600, previous=first)
    assert first.value == "ALARM" and again is first


def test_enough_real_datapoints_are_found_further_back_than_n_periods() -> None:
    """ "The most recent existing data points", however far back in the range: 3 of them here."""
    d = alarm(3, treat="breaching")
    assert evaluate(d, series("X X - X -"), NOW).value == "ALARM"
    assert evaluate(d, series("0 X - X -"), NOW).value == "OK"  # the missing ones are not needed, not breaching


def test_a_new_alarm_starts_in_insufficient_data_and_reports_its_first_evaluation() -> None:
    state = evaluate(alarm(1, n=1), series("- - - - X"), NOW)
    assert state.value == "ALARM"
    assert state.reason.startswith("Threshold Crossed: 1 out of the last 1 datapoint [90.0 (")
    assert "was greater than the threshold (50.0)" in state.reason
    assert "INSUFFICIENT_DATA -> ALARM transition" in state.reason
    data = state.reason_data or {}
    assert data["recentDatapoints"] == [90.0] and data["threshold"] == 50.0 and data["period"] == PERIOD
    assert data["statistic"] == "Maximum"
    assert data["evaluatedDatapoints"][0]["value"] == 90.0 and data["evaluatedDatapoints"][0]["sampleCount"] == 1.0


def test_the_period_still_open_is_not_evaluated() -> None:
    d = alarm(1, n=1, treat="notBreaching")
    open_period = [Sample(END_MS + 5_000, 1000.0)]
    assert evaluate(d, open_period, NOW).value == "OK"
    assert evaluate(d, open_period, NOW + PERIOD).value == "ALARM"  # once closed, it counts


@pytest.mark.parametrize(
    ("stat", "values", "expected"),
    [
        ("SampleCount", [1, 2, 3], 3.0),
        ("Sum", [1, 2, 3], 6.0),
        ("Average", [1, 2, 3], 2.0),
        ("Minimum", [1, 2, 3], 1.0),
        ("Maximum", [1, 2, 3], 3.0),
        ("p50", [1, 2, 3, 4], 2.0),
        ("p99", list(range(1, 101)), 99.0),
        ("p99.9", list(range(1, 1001)), 999.0),
        ("p100", [5, 1], 5.0),
    ],
)
def test_statistics_of_a_period(stat: str, values: list[float], expected: float) -> None:
    points = aggregate([Sample(1000 + i, float(v)) for i, v in enumerate(values)], stat, 10, 0, 10_000)
    assert points[0].value == expected and points[0].sample_count == len(values)


def test_percentiles_are_nearest_rank_and_absent_for_negative_values() -> None:
    assert percentile([10, 20, 30], 50) == 20
    assert percentile([10, 20, 30], 67) == 30  # rank ceil(2.01) = 3
    assert percentile([-1.0, 2.0], 50) is None
    assert aggregate([Sample(0, -1.0)], "p90", 10, 0, 10_000) == {}


def test_a_p99_latency_alarm_fires_on_the_slow_tail() -> None:
    d = alarm(1, n=1, treat="notBreaching", Statistic=None, ExtendedStatistic="p99")
    fast = [Sample(END_MS - 200_000 + i, 10.0) for i in range(100)]
    assert evaluate(d, fast, NOW).value == "OK"
    assert evaluate(d, fast + [Sample(END_MS - 100_000, 900.0)] * 2, NOW).value == "ALARM"


def test_low_sample_percentiles_keep_the_state_when_told_to_ignore_them() -> None:
    d = alarm(1, n=1, treat="notBreaching", Statistic=None, ExtendedStatistic="p99")
    sparse = [Sample(END_MS - 100_000, 900.0)]
    assert evaluate(d, sparse, NOW).value == "ALARM"  # evaluate (the default): one sample is enough
    quiet = alarm(
        1, n=1, treat="notBreaching", Statistic=None, ExtendedStatistic="p99", EvaluateLowSampleCountPercentile="ignore"
    )
    assert evaluate(quiet, sparse, NOW).value == "INSUFFICIENT_DATA"  # fewer than 10/(1-0.99) samples


def math_alarm(expression: str, treat: str = "notBreaching") -> AlarmDefinition:
    def stat(qid: str, name: str) -> dict[str, object]:
        return {
            "Id": qid,
            "ReturnData": False,
            "MetricStat": {
                "Metric": {"Namespace": "docllm", "MetricName": name, "Dimensions": [{"Name": "Target", "Value": "l"}]},
                "Period": 10,
                "Stat": "Sum",
            },
        }

    return AlarmDefinition.from_cfn(
        {
            "AlarmName": "docllm-dev-serving-5xx-rate",
            "Metrics": [
                stat("errors", "AskServerErrors"),
                stat("requests", "AskRequests"),
                {"Id": "rate", "Expression": expression, "Label": "5xx %", "ReturnData": True},
            ],
            "EvaluationPeriods": 1,
            "Threshold": 5,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": treat,
        }
    )


def test_metric_math_divides_errors_by_requests_per_period() -> None:
    d = math_alarm("100 * errors / requests")
    now = 1_000_015.0
    closed = 1_000_000_000 - 5_000  # inside the period [999_990 s, 1_000_000 s)
    requests = [Sample(closed, 1.0)] * 10
    assert evaluate(d, {"errors": [Sample(closed, 1.0)] * 1, "requests": requests}, now).value == "ALARM"
    assert evaluate(d, {"errors": [], "requests": requests}, now).value == "OK"  # no errors datapoint: no result


def test_fill_supplies_a_value_where_a_metric_has_none_and_division_by_zero_gives_no_datapoint() -> None:
    now = 1_000_015.0
    closed = 1_000_000_000 - 5_000
    filled = math_alarm("100 * FILL(errors, 0) / requests", treat="breaching")
    assert evaluate(filled, {"requests": [Sample(closed, 1.0)]}, now).value == "OK"  # 0 % computed
    assert evaluate(filled, {"errors": [Sample(closed, 1.0)]}, now).value == "ALARM"  # x/0: missing -> breaching


@pytest.mark.parametrize(
    "expression",
    [
        "SUM(METRICS())",
        "errors ** 2",
        "__import__('os')",
        "errors.real",
        "IF(errors > 1, 1, 0)",
        "FILL(errors, REPEAT)",
    ],
)
def test_expressions_outside_the_safe_subset_are_refused_with_the_alarm_named(expression: str) -> None:
    with pytest.raises(UnsupportedAlarmError, match="docllm-dev-serving-5xx-rate"):
        math_alarm(expression)


def test_anomaly_band_alarms_are_refused_with_a_clear_error() -> None:
    with pytest.raises(UnsupportedAlarmError, match="anomaly-detection"):
        alarm(1, ComparisonOperator="LessThanLowerOrGreaterThanUpperThreshold")


def test_the_state_change_event_names_the_alarm_its_states_and_its_metric() -> None:
    d = alarm(1, n=1, treat="notBreaching", AlarmDescription="p99 too slow")
    before = AlarmState.initial(NOW - 60)
    after = evaluate(d, series("- - - - X"), NOW, previous=before)
    wire = state_change_event(d, before, after).to_wire()
    assert wire["source"] == "aws.cloudwatch" and wire["detail-type"] == "CloudWatch Alarm State Change"
    assert wire["resources"] == ["arn:aws:cloudwatch:local:000000000000:alarm:docllm-dev-test"]
    detail = wire["detail"]
    assert detail["state"]["value"] == "ALARM" and detail["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert json.loads(detail["state"]["reasonData"])["recentDatapoints"] == [90.0]
    (metric,) = detail["configuration"]["metrics"]
    assert metric["metricStat"]["metric"] == {
        "dimensions": {"Target": "local"},
        "name": "AskLatency",
        "namespace": "docllm",
    }
    assert metric["metricStat"]["stat"] == "Maximum" and metric["returnData"] is True


def test_a_per_version_instance_adds_its_dimensions_and_names_its_parent() -> None:
    d = math_alarm("100 * errors / requests")
    v = d.with_dimensions({"Family": "tiny", "Version": "v2"}, name=f"{d.name}@v2")
    assert v.parent == d.name and v.name.endswith("@v2")
    assert all(m.dimensions == {"Target": "l", "Family": "tiny", "Version": "v2"} for m in v.metric_ids)
