"""EventBridge pattern semantics for the operators the template uses (and a few more)."""

from __future__ import annotations

import pytest

from docllm.runtime.patterns import PatternError, matches

EVENT = {
    "source": "aws.s3",
    "detail-type": "Object Created",
    "detail": {"bucket": {"name": "raw"}, "object": {"key": "s3/a.md", "size": 120}, "tags": ["x", "y"]},
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": ["aws.s3"]}, True),
        ({"source": ["aws.ec2", "aws.s3"]}, True),
        ({"source": ["aws.ec2"]}, False),
        ({"detail": {"bucket": {"name": ["raw"]}}}, True),
        ({"detail": {"object": {"key": [{"prefix": "s3/"}]}}}, True),
        ({"detail": {"object": {"key": [{"prefix": "ec2/"}]}}}, False),
        ({"detail": {"object": {"key": [{"suffix": ".md"}]}}}, True),
        ({"detail": {"object": {"key": [{"anything-but": "s3/a.md"}]}}}, False),
        ({"detail": {"object": {"key": [{"anything-but": {"prefix": "ec2/"}}]}}}, True),
        ({"detail": {"object": {"etag": [{"exists": False}]}}}, True),
        ({"detail": {"object": {"etag": [{"exists": True}]}}}, False),
        ({"detail": {"object": {"key": [{"exists": True}]}}}, True),
        ({"detail": {"object": {"size": [{"numeric": [">", 100, "<=", 120]}]}}}, True),
        ({"detail": {"object": {"size": [{"numeric": [">", 120]}]}}}, False),
        ({"detail": {"object": {"size": [120]}}}, True),
        ({"detail": {"tags": ["y"]}}, True),
        ({"detail": {"tags": ["z"]}}, False),
        ({"detail": {"missing": ["a"]}}, False),
        ({"detail-type": [{"equals-ignore-case": "object created"}]}, True),
        ({"detail": {"object": {"key": [{"wildcard": "s3/*.md"}]}}}, True),
        ({"detail": {"object": {"key": [{"anything-but": ["a", "b"]}]}}}, True),
        ({"detail": {"nothere": [{"anything-but": "a"}]}}, False),
    ],
)
def test_pattern_matches_as_eventbridge_does(pattern, expected):
    assert matches(pattern, EVENT) is expected


def test_a_nested_pattern_does_not_match_a_scalar_field():
    assert not matches({"source": {"x": ["y"]}}, EVENT)


def test_an_unknown_operator_is_an_error_not_a_silent_mismatch():
    with pytest.raises(PatternError):
        matches({"source": [{"regex": ".*"}]}, EVENT)


def test_scalar_pattern_values_are_rejected():
    with pytest.raises(PatternError):
        matches({"source": "aws.s3"}, EVENT)


def test_the_serving_alarm_rule_matches_a_prefix_on_the_alarm_name_and_the_nested_state_value(real_events_dir):
    """The default-bus rule of the template, against the real sample renamed into the stage's names."""
    import json

    from docllm.runtime.template import read_wiring
    from tests.conftest import REPO

    (rule,) = [
        r
        for r in read_wiring(REPO / "template.yaml").rules
        if r.bus == "default" and "aws.cloudwatch" in r.pattern.get("source", [])
    ]
    sample = json.loads((real_events_dir / "awsdocs" / "cloudwatch-alarm-state-change-single-metric.json").read_text())
    assert not matches(rule.pattern, sample)  # "ServerCpuTooHigh": not one of the stage's serving alarms

    def renamed(name: str, state: str) -> dict:
        return {**sample, "detail": {**sample["detail"], "alarmName": name, "state": {"value": state}}}

    assert matches(rule.pattern, renamed("docllm-dev-serving-5xx-rate", "ALARM"))
    assert matches(rule.pattern, renamed("docllm-dev-serving-5xx-rate@tiny-s3-v2", "OK"))
    assert not matches(rule.pattern, renamed("docllm-dev-serving-5xx-rate", "INSUFFICIENT_DATA"))
    assert not matches(rule.pattern, renamed("docllm-dev-drift-oov-rate", "ALARM"))
    assert not matches(rule.pattern, renamed("docllm-prod-serving-5xx-rate", "ALARM"))  # another stage's
