"""The platform parses every real AWS event sample in ../shared/events/real that it consumes."""

from __future__ import annotations

import json

import pytest

from docllm.events.aws import (
    AlarmStateChangeEvent,
    EndpointStateChangeEvent,
    S3ObjectEvent,
    TrainingJobStateChangeEvent,
    eventbridge_bodies,
)
from docllm.exceptions import ContractError
from docllm.runtime.patterns import matches
from docllm.runtime.template import read_wiring
from tests.conftest import REPO

APPLICABLE = {
    "awsdocs/s3-eventbridge-object-created.json": S3ObjectEvent,
    "powertools-lambda-python/s3EventBridgeNotificationObjectCreatedEvent.json": S3ObjectEvent,
    "powertools-lambda-python/s3EventBridgeNotificationObjectDeletedEvent.json": S3ObjectEvent,
    "powertools-lambda-python-pr4069/eb_s3_event.json": S3ObjectEvent,
    "awsdocs/sagemaker-training-job-state-change.json": TrainingJobStateChangeEvent,
    "awsdocs/sagemaker-endpoint-state-change.json": EndpointStateChangeEvent,
    "awsdocs/cloudwatch-alarm-state-change-single-metric.json": AlarmStateChangeEvent,
    "awsdocs/cloudwatch-alarm-state-change-metric-math.json": AlarmStateChangeEvent,
    "awsdocs/cloudwatch-alarm-state-change-anomaly-detection.json": AlarmStateChangeEvent,
    "awsdocs/cloudwatch-alarm-state-change-composite-suppressor.json": AlarmStateChangeEvent,
}


@pytest.mark.parametrize("name", sorted(APPLICABLE))
def test_real_sample_parses_with_its_model(real_events_dir, name):
    APPLICABLE[name].model_validate(json.loads((real_events_dir / name).read_text()))


def test_sqs_batch_wrapping_an_eventbridge_s3_event_unwraps_to_an_object_created(real_events_dir):
    batch = json.loads((real_events_dir / "powertools-lambda-python-pr4069/sqs_eb_s3_event.json").read_text())
    (body,) = eventbridge_bodies(batch)
    assert S3ObjectEvent.model_validate(body).detail.object.key == "__init__.py"


@pytest.mark.parametrize(
    "name", ["powertools-lambda-python/sqsEvent.json", "powertools-lambda-python-pr4069/sqs_s3_event.json"]
)
def test_sqs_batches_that_do_not_carry_eventbridge_events_are_refused_with_a_contract_error(real_events_dir, name):
    with pytest.raises(ContractError):
        eventbridge_bodies(json.loads((real_events_dir / name).read_text()))


def test_the_templates_raw_bucket_rule_selects_real_s3_events_only_for_the_raw_bucket(real_events_dir):
    rule = next(r for r in read_wiring(REPO / "template.yaml").rules if r.name == "RawObjectEventsRule")
    event = json.loads((real_events_dir / "awsdocs/s3-eventbridge-object-created.json").read_text())
    assert not matches(rule.pattern, event)  # another bucket
    event["detail"]["bucket"]["name"] = "RawBucket"
    assert matches(rule.pattern, event)


def test_the_templates_job_rule_ignores_jobs_the_platform_did_not_start(real_events_dir):
    rule = next(r for r in read_wiring(REPO / "template.yaml").rules if r.name == "SageMakerJobStateRule")
    event = json.loads((real_events_dir / "awsdocs/sagemaker-training-job-state-change.json").read_text())
    assert not matches(rule.pattern, event)
    event["detail"]["TrainingJobName"] = "docllm-dev-tokenizer-abc-1"
    assert matches(rule.pattern, event)
