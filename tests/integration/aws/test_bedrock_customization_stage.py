"""The customize stage end to end on the local platform's state, objects and bus, with Bedrock on
botocore's Stubber (every request checked against the service model): a ``bedrock-customization``
family's launch writes the JSONL and starts the job, Bedrock's state-change event completes it into
a model record and "Model Trained" (or "Stage Failed" with Bedrock's reason), the evaluate stage
reports Bedrock's own metrics for it without launching a job, and the local platform refuses to
customize, saying why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from docllm.adapters.aws.bedrock_customization import BedrockCustomizer
from docllm.adapters.local.customization import CustomizationUnavailableError
from docllm.bootstrap import Platform
from docllm.events.contracts import ModelTrained, to_bus
from docllm.exceptions import TransientError
from docllm.records import JOBS_PK, JobRecord
from docllm.service_layer import customize, evaluate, train
from docllm.service_layer.jobs import MODELS_PK
from docllm.settings import Settings
from tests.conftest import REPO
from tests.integration.aws.conftest import REGION

FAMILY = "s3-bedrock"  # the packaged family: FINE_TUNING on amazon.titan-text-lite-v1:0:4k
DATASET = "ds-0123456789abcdef"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/docllm-dev-bedrock-customization"
JOB_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-customization-job/amazon.titan-text-lite-v1:0:4k/abcdefghijkl"
MODEL_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/amazon.titan-text-lite-v1:0:4k/mnopqrstuvwx"


def document(i: int) -> str:
    return (
        f"# Configuring widget{i} logging\n\n"
        f"Widget{i} logging records every request made to the widget{i} endpoint.\n\n"
        f"A widget{i} is a container for objects stored in Amazon S3.\n\n"
        f"To enable logging on widget{i}, you set the status value to `Enabled{i}`."
    )


def put_dataset(p: Platform, n: int = 20) -> None:
    for split, rng in (("train", range(n)), ("validation", range(n, n + 3))):
        lines = [{"chunk_id": f"w{i}", "doc_key": f"s3/widget{i}.md", "text": document(i)} for i in rng]
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        p.objects.put(p.settings.artifact_bucket, f"datasets/{DATASET}/{split}.jsonl", body)


def platform(tmp_path: Path) -> Platform:
    return Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path)}),
        template=REPO / "template.yaml",
    )


@pytest.fixture
def bedrock(tmp_path: Path) -> Iterator[tuple[Platform, Stubber]]:
    p = platform(tmp_path)
    client = boto3.client("bedrock", region_name=REGION)
    with Stubber(client) as stub:
        p.__dict__["customizer"] = BedrockCustomizer(role_arn=ROLE, client=client)  # the cached port, replaced
        put_dataset(p)
        yield p, stub
        stub.assert_no_pending_responses()


def described(status: str, name: str, **extra: Any) -> dict[str, Any]:
    data = f"s3://artifactbucket/customizations/{FAMILY}/{name}/"
    return {
        "jobArn": JOB_ARN,
        "jobName": name,
        "outputModelName": name,
        "roleArn": ROLE,
        "status": status,
        "creationTime": datetime(2025, 1, 1, tzinfo=UTC),
        "baseModelArn": f"arn:aws:bedrock:{REGION}::foundation-model/amazon.titan-text-lite-v1:0:4k",
        "trainingDataConfig": {"s3Uri": data + "train.jsonl"},
        "validationDataConfig": {"validators": [{"s3Uri": data + "validation.jsonl"}]},
        "outputDataConfig": {"s3Uri": data + "output/"},
        **extra,
    }


def state_change(name: str, status: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "5b3d1c2e-0000-4000-8000-000000000000",
        "detail-type": "Model Customization Job State Change",
        "source": "aws.bedrock",
        "account": ACCOUNT,
        "time": "2025-01-02T00:00:00Z",
        "region": REGION,
        "resources": [JOB_ARN],
        "detail": {"version": "0.0", "jobName": name, "jobArn": JOB_ARN, "jobStatus": status},
    }


def launched(p: Platform, stub: Stubber, request_id: str = "req-1") -> str:
    stub.add_response("create_model_customization_job", {"jobArn": JOB_ARN}, expected_params=None)
    out = train._launch(p, FAMILY, DATASET, "", request_id)  # the train stage's dispatch by method
    assert out["outcome"] == "launched" and out["method"] == "bedrock-customization", out
    return str(out["job"])


def test_launch_writes_bedrocks_jsonl_records_the_job_and_starts_it(bedrock: tuple[Platform, Stubber]) -> None:
    p, stub = bedrock
    data = None

    def check(params: dict[str, Any]) -> None:
        nonlocal data
        data = params

    stub.add_response("create_model_customization_job", {"jobArn": JOB_ARN}, expected_params=None)
    stub.client.meta.events.register("provide-client-params.bedrock.CreateModelCustomizationJob", _keep(check))
    out = train._launch(p, FAMILY, DATASET, "", "req-1")
    name = out["job"]
    assert name.startswith("docllm-dev-cust-s3-bedrock-") and out["outcome"] == "launched"
    assert data is not None
    prefix = f"customizations/{FAMILY}/{name}/"
    art = p.settings.artifact_bucket
    assert data["trainingDataConfig"] == {"s3Uri": f"s3://{art}/{prefix}train.jsonl"}
    assert data["outputDataConfig"] == {"s3Uri": f"s3://{art}/{prefix}output/"}
    assert (data["jobName"], data["customModelName"], data["roleArn"]) == (name, name, ROLE)
    assert (
        data["baseModelIdentifier"] == "amazon.titan-text-lite-v1:0:4k" and data["customizationType"] == "FINE_TUNING"
    )
    assert data["hyperParameters"] == {"epochCount": "2", "batchSize": "1", "learningRate": "0.00001"}
    # The files Bedrock reads: prompt/completion lines, and their summary.
    lines = [json.loads(x) for x in p.objects.get(art, prefix + "train.jsonl").decode().splitlines()]
    assert lines and all(set(line) == {"prompt", "completion"} for line in lines)
    summary = json.loads(p.objects.get(art, prefix + "data.json"))
    assert summary["train_records"] == len(lines) and summary["customization_type"] == "FINE_TUNING"
    assert ("validationDataConfig" in data) == (summary["validation_records"] > 0)
    record = JobRecord.model_validate(p.state.get(JOBS_PK, name))
    assert (record.stage, record.status) == ("customize", "InProgress")
    assert record.context["method"] == "bedrock-customization" and record.context["request_id"] == "req-1"
    assert record.context["train_sha256"] == summary["files"]["train.jsonl"]


def _keep(fn: Any) -> Any:
    def handler(params: dict[str, Any], **_: Any) -> None:
        fn(dict(params))

    return handler


def test_a_redelivered_launch_adopts_the_running_job(bedrock: tuple[Platform, Stubber]) -> None:
    p, stub = bedrock
    name = launched(p, stub)
    stub.add_response("get_model_customization_job", described("InProgress", name), {"jobIdentifier": name})
    out = train._launch(p, FAMILY, DATASET, "", "req-1")
    assert (out["job"], out["outcome"]) == (name, "already-launched")  # no second CreateModelCustomizationJob


def test_completion_registers_the_custom_model_and_announces_it(bedrock: tuple[Platform, Stubber]) -> None:
    p, stub = bedrock
    name = launched(p, stub, "req-7")
    stub.add_response(
        "get_model_customization_job",
        described(
            "Completed",
            name,
            outputModelArn=MODEL_ARN,
            trainingMetrics={"trainingLoss": 1.25},
            validationMetrics=[{"validationLoss": 1.5}],
        ),
        {"jobIdentifier": name},
    )
    out = customize.handle_customization_event(p, state_change(name, "Completed"))
    assert out == {"job": name, "outcome": "completed", "next": "Model Trained"}
    model = p.state.get(MODELS_PK, name)
    assert model is not None
    assert (model["export_uri"], model["custom_model_arn"], model["method"]) == (
        MODEL_ARN,
        MODEL_ARN,
        "bedrock-customization",
    )
    assert model["metrics"] == {"final_train_loss": 1.25, "final_val_loss": 1.5}
    assert (model["family"], model["dataset_version"], model["job"]) == (FAMILY, DATASET, name)
    assert JobRecord.model_validate(p.state.get(JOBS_PK, name)).status == "Completed"
    (event,) = [e for e in p.event_log.last(20) if e.detail_type == "Model Trained"]
    assert event.body["detail"]["export_uri"] == MODEL_ARN and event.body["detail"]["request_id"] == "req-7"
    # A redelivered event changes nothing and asks Bedrock nothing.
    assert customize.handle_customization_event(p, state_change(name, "Completed"))["outcome"] == "already handled"


def test_a_failed_job_fails_the_stage_with_bedrocks_reason(bedrock: tuple[Platform, Stubber]) -> None:
    p, stub = bedrock
    name = launched(p, stub, "req-3")
    stub.add_response("get_model_customization_job", described("Failed", name, failureMessage="bad record 3"))
    out = customize.handle_customization_event(p, state_change(name, "Failed"))
    assert out["outcome"] == "failed" and out["reason"] == "bad record 3"
    assert p.state.get(MODELS_PK, name) is None
    (failed,) = [e for e in p.event_log.last(20) if e.detail_type == "Stage Failed"]
    assert failed.body["detail"] == {
        "schema_version": 1,
        "stage": "customize",
        "subject": name,
        "reason": "bad record 3",
        "request_id": "req-3",
    }


def test_an_event_ahead_of_bedrocks_describe_is_retried(bedrock: tuple[Platform, Stubber]) -> None:
    p, stub = bedrock
    name = launched(p, stub)
    stub.add_response("get_model_customization_job", described("InProgress", name))
    with pytest.raises(TransientError):
        customize.handle_customization_event(p, state_change(name, "Completed"))
    assert JobRecord.model_validate(p.state.get(JOBS_PK, name)).status == "InProgress"


def test_events_of_other_jobs_are_not_ours(bedrock: tuple[Platform, Stubber]) -> None:
    p, _ = bedrock
    assert customize.handle_customization_event(p, state_change("someone-elses", "Completed"))["outcome"] == "not ours"


def test_stop_asks_bedrock_to_stop_the_running_job(bedrock: tuple[Platform, Stubber]) -> None:
    p, stub = bedrock
    name = launched(p, stub)
    stub.add_response("get_model_customization_job", described("InProgress", name))
    stub.add_response("stop_model_customization_job", {}, {"jobIdentifier": name})
    customize.stop(p, JobRecord.model_validate(p.state.get(JOBS_PK, name)))


def test_the_evaluate_stage_reports_bedrocks_metrics_without_launching_a_job(
    bedrock: tuple[Platform, Stubber],
) -> None:
    # The full path (metrics files, gate, registry, manifest) is test_bedrock_model_gate.py's.
    p, stub = bedrock
    name = launched(p, stub, "req-5")
    stub.add_response(
        "get_model_customization_job",
        described("Completed", name, outputModelArn=MODEL_ARN, validationMetrics=[{"validationLoss": 1.5}]),
    )
    customize.handle_customization_event(p, state_change(name, "Completed"))
    trained = ModelTrained(
        model_version=name,
        family=FAMILY,
        job_name=name,
        dataset_version=DATASET,
        tokenizer_version="",
        export_uri=MODEL_ARN,
        request_id="req-5",
    )
    out = evaluate.handle_evaluate_event(p, to_bus(trained).to_wire())
    assert out["outcome"] == "evaluated from Bedrock's metrics" and out["metrics"] == {"bedrock_validation_loss": 1.5}
    (done,) = [e for e in p.event_log.last(20) if e.detail_type == "Evaluation Completed"]
    assert done.body["detail"]["request_id"] == "req-5" and done.body["detail"]["model_version"] == name
    assert not [r for _, r in p.state.query(JOBS_PK) if r["stage"] == "evaluate"]  # no job launched
    assert not [e for e in p.event_log.last(20) if e.detail_type == "Stage Failed"]


def test_the_local_platform_refuses_with_the_reason_and_fails_the_request(tmp_path: Path) -> None:
    p = platform(tmp_path)
    put_dataset(p)
    with pytest.raises(CustomizationUnavailableError, match="cannot run on the local platform") as caught:
        train._launch(p, FAMILY, DATASET, "", "req-9")
    assert getattr(caught.value, "announced", False)  # lambda_support does not announce it twice
    (record,) = [JobRecord.model_validate(r) for _, r in p.state.query(JOBS_PK)]
    assert record.status == "Failed" and "Bedrock" in (record.failure_reason or "")
    (failed,) = [e for e in p.event_log.last(20) if e.detail_type == "Stage Failed"]
    assert failed.body["detail"]["request_id"] == "req-9" and failed.body["detail"]["stage"] == "customize"


def cancel_run(p: Platform, run_id: str) -> None:
    """The pipelines stage's record of a cancelled run (what its guards read)."""
    from docllm.pipelines.records import RUNS_PK

    p.state.put(RUNS_PK, run_id, {"run_id": run_id, "state": "cancelled"})


def test_a_cancelled_runs_completed_job_registers_nothing(bedrock: tuple[Platform, Stubber]) -> None:
    p, stub = bedrock
    name = launched(p, stub, "run-1")
    cancel_run(p, "run-1")
    stub.add_response("get_model_customization_job", described("Completed", name, outputModelArn=MODEL_ARN))
    out = customize.handle_customization_event(p, state_change(name, "Completed"))
    assert out["outcome"] == "run cancelled: recorded Stopped"
    assert p.state.get(MODELS_PK, name) is None
    assert JobRecord.model_validate(p.state.get(JOBS_PK, name)).status == "Stopped"
    assert not [e for e in p.event_log.last(20) if e.detail_type in ("Model Trained", "Stage Failed")]


def test_a_cancelled_run_launches_no_customization_job(bedrock: tuple[Platform, Stubber]) -> None:
    p, _ = bedrock
    cancel_run(p, "run-2")
    out = train._launch(p, FAMILY, DATASET, "", "run-2")  # the Stubber refuses any Bedrock call
    assert out["outcome"] == "run cancelled"
    assert JobRecord.model_validate(p.state.get(JOBS_PK, out["job"])).status == "Stopped"
