"""The template's alarms, read as the local platform evaluates them."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.monitoring.alarms import UnsupportedAlarmError
from docllm.monitoring.definitions import is_serving_alarm, read_alarms
from docllm.runtime.template import read_resources
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "monitoring" / "template.yaml"
SERVING_KINDS = ("p99-latency", "5xx-rate", "ungrounded-rate", "canary-accuracy")


def test_alarms_resolve_the_stage_and_the_local_deploy_target() -> None:
    defs = read_alarms(FIXTURE)
    rate = defs.named("docllm-dev-serving-5xx-rate")
    assert rate is not None and rate.threshold == 5.0 and rate.period == 10 and rate.m == 2
    assert {m.name for m in rate.metric_ids} == {"AskServerErrors", "AskRequests"}
    assert all(m.dimensions == {"service": "docllm", "Target": "local"} for m in rate.metric_ids)
    assert read_alarms(FIXTURE, parameters={"Stage": "prod"}).named("docllm-prod-serving-5xx-rate") is not None


def test_alarms_on_aws_metrics_are_skipped_with_the_reason_and_false_conditions_are_absent() -> None:
    defs = read_alarms(FIXTURE)
    (skipped,) = defs.skipped
    assert skipped.name == "docllm-dev-rollback-queue-age" and "AWS/SQS" in skipped.reason
    # DeployTarget is local here: the SageMaker-only alarm does not exist, as CloudFormation would not create it.
    assert "docllm-dev-endpoint-5xx" not in {a.name for a in defs.alarms} | {s.name for s in defs.skipped}


def test_getatt_queue_name_resolves_to_the_local_queue() -> None:
    props = read_resources(FIXTURE, "AWS::CloudWatch::Alarm")["RollbackQueueAgeAlarm"]
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": "RollbackQueue"}]


def test_an_alarm_on_the_platform_namespace_the_evaluator_cannot_compute_is_an_error(tmp_path: Path) -> None:
    text = FIXTURE.read_text().replace(
        "ComparisonOperator: GreaterThanThreshold\n      TreatMissingData: notBreaching\n  DriftOov",
        "ComparisonOperator: GreaterThanUpperThreshold\n      TreatMissingData: notBreaching\n  DriftOov",
    )
    assert "GreaterThanUpperThreshold" in text
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(UnsupportedAlarmError, match=r"docllm-dev-serving-p99-latency.*anomaly"):
        read_alarms(tmp_path / "t.yaml")


def test_serving_alarms_are_told_from_the_others_by_name() -> None:
    assert is_serving_alarm("docllm-dev-serving-5xx-rate")
    assert is_serving_alarm("docllm-prod-serving-5xx-rate@tiny-s3-v2")
    assert not is_serving_alarm("docllm-dev-drift-oov-rate")
    assert not is_serving_alarm("other-dev-serving-x")


def test_the_real_templates_serving_and_drift_alarms_are_evaluated_locally() -> None:
    defs = read_alarms(REPO / "template.yaml", parameters={"Stage": "dev"})
    names = {a.name for a in defs.alarms}
    assert {f"docllm-dev-serving-{kind}" for kind in SERVING_KINDS} <= names
    assert {"docllm-dev-drift-low-score", "docllm-dev-drift-oov-rate"} <= names
    for alarm in defs.alarms:
        for metric in alarm.metric_ids:  # the dimension set the local metrics carry: one definition, both platforms
            assert metric.namespace == "docllm" and metric.dimensions == {"service": "docllm", "Target": "local"}
    for kind in ("p99-latency", "5xx-rate", "ungrounded-rate"):
        alarm = defs.named(f"docllm-dev-serving-{kind}")
        assert alarm is not None and alarm.high_resolution and alarm.period == 10
    # Everything else watches AWS's own metrics (queues, functions, the API): skipped, each with its reason.
    assert defs.skipped and all("AWS/" in s.reason for s in defs.skipped)
