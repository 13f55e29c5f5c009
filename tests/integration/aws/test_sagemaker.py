"""SageMaker job runner: the request against botocore's service model, submit/describe on moto."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from docllm.adapters.aws.sagemaker import (
    CHECKPOINT_LOCAL_PATH,
    ENTRY_POINT_ENV,
    SageMakerJobRunner,
    build_create_training_job_request,
    has_local_storage,
)
from docllm.exceptions import ConfigurationError, ConflictError, NotFoundError
from docllm.ports.jobs import JobSpec, VpcConfig

ROLE = "arn:aws:iam::123456789012:role/docllm-jobs"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docllm-train:1"
KMS = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def spec(**overrides: Any) -> JobSpec:
    base: dict[str, Any] = {
        "name": "train-v3-1",
        "image": "train",
        "entry_point": "docllm.jobs.train_job",
        "hyperparameters": {"n_layer": "4", "lr": "3e-4"},
        "channels": {"train": "s3://datasets/v3/train/", "tokenizer": "s3://models/tok/v1/"},
        "output_uri": "s3://models/train/",
        "tags": {"docllm:stage": "train", "dataset": "v3"},
    }
    return JobSpec(**{**base, **overrides})


def assert_valid_for_service_model(request: dict[str, Any]) -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    # Raises ParamValidationError naming every missing/mistyped/unknown field.
    shape = model.operation_model("CreateTrainingJob").input_shape
    assert shape is not None
    validate_parameters(request, shape)


@pytest.mark.parametrize(
    "job",
    [
        spec(),
        spec(spot=True, checkpoint_uri="s3://models/ckpt/train-v3-1/", max_wait_s=7200, max_runtime_s=3600),
        spec(vpc=VpcConfig(subnets=["subnet-1", "subnet-2"], security_group_ids=["sg-1"]), instance_count=2),
        spec(channels={}, hyperparameters={}, tags={}),
    ],
    ids=["plain", "spot-checkpoint", "vpc-distributed", "minimal"],
)
def test_request_is_valid_for_the_service_model(job: JobSpec) -> None:
    request = build_create_training_job_request(job, role_arn=ROLE, image_uri=IMAGE, kms_key_id=KMS)
    assert_valid_for_service_model(request)


def test_request_maps_every_spec_field() -> None:
    request = build_create_training_job_request(spec(), role_arn=ROLE, image_uri=IMAGE, kms_key_id=KMS)
    assert request["TrainingJobName"] == "train-v3-1"
    assert request["RoleArn"] == ROLE
    assert request["AlgorithmSpecification"] == {"TrainingImage": IMAGE, "TrainingInputMode": "File"}
    assert request["HyperParameters"] == {
        "n_layer": "4",
        "lr": "3e-4",
        "entry_point": "docllm.jobs.train_job",
    }
    assert request["Environment"][ENTRY_POINT_ENV] == "docllm.jobs.train_job"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in request["InputDataConfig"]}
    assert channels["train"] == {
        "S3DataType": "S3Prefix",
        "S3Uri": "s3://datasets/v3/train/",
        "S3DataDistributionType": "FullyReplicated",
    }
    assert set(channels) == {"train", "tokenizer"}
    assert request["OutputDataConfig"] == {"S3OutputPath": "s3://models/train/", "KmsKeyId": KMS}
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 50,
        "VolumeKmsKeyId": KMS,
    }
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 24 * 3600}
    assert request["EnableManagedSpotTraining"] is False
    assert "CheckpointConfig" not in request and "VpcConfig" not in request
    assert "EnableInterContainerTrafficEncryption" not in request
    assert {t["Key"]: t["Value"] for t in request["Tags"]} == {"docllm:stage": "train", "dataset": "v3"}


def test_spot_job_gets_a_wait_limit_and_checkpoints() -> None:
    job = spec(spot=True, checkpoint_uri="s3://models/ckpt/x/", max_runtime_s=3600)
    request = build_create_training_job_request(job, role_arn=ROLE, image_uri=IMAGE)
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert request["CheckpointConfig"] == {"S3Uri": "s3://models/ckpt/x/", "LocalPath": CHECKPOINT_LOCAL_PATH}


def test_spot_wait_shorter_than_runtime_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="max_wait_s"):
        build_create_training_job_request(
            spec(spot=True, max_runtime_s=3600, max_wait_s=60), role_arn=ROLE, image_uri=IMAGE
        )


def test_vpc_of_the_spec_wins_over_the_runner_default_and_multi_node_encrypts_traffic() -> None:
    own = VpcConfig(subnets=["subnet-own"], security_group_ids=["sg-own"])
    default = VpcConfig(subnets=["subnet-default"], security_group_ids=["sg-default"])
    request = build_create_training_job_request(
        spec(vpc=own, instance_count=2), role_arn=ROLE, image_uri=IMAGE, vpc=default
    )
    assert request["VpcConfig"] == {"Subnets": ["subnet-own"], "SecurityGroupIds": ["sg-own"]}
    assert request["EnableInterContainerTrafficEncryption"] is True
    request = build_create_training_job_request(spec(), role_arn=ROLE, image_uri=IMAGE, vpc=default)
    assert request["VpcConfig"]["Subnets"] == ["subnet-default"]


def test_instances_with_local_storage_get_no_volume_key() -> None:
    job = spec(instance_type="ml.g5.2xlarge")
    request = build_create_training_job_request(job, role_arn=ROLE, image_uri=IMAGE, kms_key_id=KMS)
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]
    assert request["OutputDataConfig"]["KmsKeyId"] == KMS


@pytest.mark.parametrize(
    ("instance", "local"),
    [
        ("ml.m5.xlarge", False),
        ("ml.m5d.xlarge", True),
        ("ml.g4dn.xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.g5.xlarge", True),
        ("ml.c5.2xlarge", False),
        ("ml.p3.2xlarge", False),
        ("ml.trn1.2xlarge", True),
    ],
)
def test_local_storage_instance_families(instance: str, local: bool) -> None:
    assert has_local_storage(instance) is local


@pytest.fixture
def runner(aws: None) -> SageMakerJobRunner:
    return SageMakerJobRunner(
        role_arn=ROLE,
        image_uris={"train": IMAGE},
        kms_key_id=KMS,
        client=boto3.client("sagemaker", region_name="eu-west-1"),
    )


def test_submitted_job_is_described_with_artifacts_hyperparameters_and_tags(
    runner: SageMakerJobRunner,
) -> None:
    arn = runner.submit(spec())
    assert arn.endswith(":training-job/train-v3-1")
    job = runner.describe("train-v3-1")
    assert job.name == "train-v3-1"
    assert job.status == "Completed"  # moto completes jobs at once
    assert job.model_artifacts_uri is not None and job.model_artifacts_uri.startswith("s3://models/train/")
    assert job.hyperparameters["entry_point"] == "docllm.jobs.train_job"
    assert job.tags == {"docllm:stage": "train", "dataset": "v3"}


def test_unknown_job_is_not_found(runner: SageMakerJobRunner) -> None:
    with pytest.raises(NotFoundError):
        runner.describe("never-submitted")
    with pytest.raises(NotFoundError):
        runner.describe("not a valid name!")


def test_image_without_a_configured_uri_is_a_configuration_error(runner: SageMakerJobRunner) -> None:
    with pytest.raises(ConfigurationError, match="tokenizer"):
        runner.submit(spec(image="tokenizer"))


EVALUATE_ROLE = "arn:aws:iam::123456789012:role/docllm-evaluate-jobs"


def test_each_image_runs_as_its_own_role_and_the_others_as_the_default(aws: None) -> None:
    # Evaluation jobs run user-supplied benchmarks: their role may not write the weights they evaluate.
    client = boto3.client("sagemaker", region_name="eu-west-1")
    r = SageMakerJobRunner(
        role_arn=ROLE,
        role_arns={"evaluate": EVALUATE_ROLE},
        image_uris={"train": IMAGE, "evaluate": IMAGE},
        client=client,
    )
    r.submit(spec(name="evaluate-v3-1", image="evaluate", entry_point="docllm.jobs.evaluate_job"))
    r.submit(spec())
    assert client.describe_training_job(TrainingJobName="evaluate-v3-1")["RoleArn"] == EVALUATE_ROLE
    assert client.describe_training_job(TrainingJobName="train-v3-1")["RoleArn"] == ROLE


def test_an_image_with_neither_its_own_nor_a_default_role_is_a_configuration_error() -> None:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    r = SageMakerJobRunner(role_arns={"evaluate": EVALUATE_ROLE}, image_uris={"train": IMAGE}, client=client)
    with Stubber(client) as stub, pytest.raises(ConfigurationError, match=r"no execution role.*'train'"):
        r.submit(spec())
    stub.assert_no_pending_responses()


def test_the_platform_gives_evaluation_jobs_the_role_its_settings_name(aws: None) -> None:
    from docllm.bootstrap import Platform
    from docllm.settings import Settings

    env = {"DOCLLM_BACKEND": "aws", "DOCLLM_SAGEMAKER_EVALUATE_ROLE_ARN": EVALUATE_ROLE}
    evaluate_fn = Platform(Settings.from_env(env)).jobs  # the evaluate function knows only its jobs' role
    assert isinstance(evaluate_fn, SageMakerJobRunner) and evaluate_fn.role_for("evaluate") == EVALUATE_ROLE
    with pytest.raises(ConfigurationError, match="no execution role"):
        evaluate_fn.role_for("train")
    train_fn = Platform(Settings.from_env({"DOCLLM_BACKEND": "aws", "DOCLLM_SAGEMAKER_ROLE_ARN": ROLE})).jobs
    assert isinstance(train_fn, SageMakerJobRunner) and train_fn.role_for("evaluate") == ROLE
    with pytest.raises(ConfigurationError, match="DOCLLM_SAGEMAKER_EVALUATE_ROLE_ARN"):
        _ = Platform(Settings.from_env({"DOCLLM_BACKEND": "aws"})).jobs


def test_resubmitting_a_name_in_use_is_a_conflict() -> None:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    r = SageMakerJobRunner(role_arn=ROLE, image_uris={"train": IMAGE}, client=client)
    with Stubber(client) as stub:
        stub.add_client_error("create_training_job", service_error_code="ResourceInUse")
        with pytest.raises(ConflictError):
            r.submit(spec())


def test_stop_requests_stop_training_job() -> None:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    r = SageMakerJobRunner(role_arn=ROLE, image_uris={}, client=client)
    with Stubber(client) as stub:
        stub.add_response("stop_training_job", {}, {"TrainingJobName": "train-v3-1"})
        r.stop("train-v3-1")
        stub.assert_no_pending_responses()


def describe_response(status: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    now = datetime(2024, 1, 1, tzinfo=UTC)
    return {
        "TrainingJobName": "train-v3-1",
        "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/train-v3-1",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://models/train/train-v3-1/output/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": IMAGE},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "CreationTime": now,
    }


def test_stopping_a_job_that_already_ended_is_a_no_op() -> None:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    r = SageMakerJobRunner(role_arn=ROLE, image_uris={}, client=client)
    with Stubber(client) as stub:
        stub.add_client_error("stop_training_job", service_error_code="ValidationException")
        stub.add_response("describe_training_job", describe_response("Completed"))
        stub.add_response("list_tags", {"Tags": []})
        r.stop("train-v3-1")
        stub.assert_no_pending_responses()


def test_stopping_an_unknown_job_is_not_found() -> None:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    r = SageMakerJobRunner(role_arn=ROLE, image_uris={}, client=client)
    with Stubber(client) as stub:
        stub.add_client_error("stop_training_job", service_error_code="ValidationException")
        stub.add_client_error("describe_training_job", service_error_code="ValidationException")
        with pytest.raises(NotFoundError):
            r.stop("train-v3-1")


def test_failed_job_reports_its_reason() -> None:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    r = SageMakerJobRunner(role_arn=ROLE, image_uris={}, client=client)
    response = {**describe_response("Failed"), "FailureReason": "AlgorithmError: loss is NaN"}
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", response, {"TrainingJobName": "train-v3-1"})
        stub.add_response("list_tags", {"Tags": [{"Key": "docllm:stage", "Value": "train"}]})
        job = r.describe("train-v3-1")
    assert (job.status, job.failure_reason, job.tags) == (
        "Failed",
        "AlgorithmError: loss is NaN",
        {"docllm:stage": "train"},
    )


def test_service_model_check_rejects_a_misspelt_field() -> None:
    # Guards the check itself: a request the real API would refuse must fail here too.
    request = build_create_training_job_request(spec(), role_arn=ROLE, image_uri=IMAGE)
    request["ResourceConfig"]["VolumeSizeGB"] = request["ResourceConfig"].pop("VolumeSizeInGB")
    with pytest.raises(Exception, match="VolumeSize"):
        assert_valid_for_service_model(request)
