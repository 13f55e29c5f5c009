"""SageMaker adapter of :class:`docllm.ports.jobs.JobRunner`.

:func:`build_create_training_job_request` is pure (no client, no I/O) so the
request can be checked against botocore's service model without AWS.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import boto3

from docllm.adapters.aws.errors import AwsNotFoundError, AwsPermanentError, aws_errors
from docllm.exceptions import ConfigurationError, NotFoundError
from docllm.ports.jobs import JobDescription, JobRunner, JobSpec, JobStatus, VpcConfig

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

#: Where SageMaker syncs ``CheckpointConfig.S3Uri`` inside the container (jobs/contract.py reads it).
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
ENTRY_POINT_ENV = "DOCLLM_ENTRY_POINT"
ENTRY_POINT_HYPERPARAMETER = "entry_point"

_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")

# Instance families with local NVMe storage: SageMaker refuses VolumeKmsKeyId for them
# (their instance store is encrypted by the hardware). Families with a "d" after the
# generation (m5d, g4dn, p4d) follow a rule; the rest are listed.
_LOCAL_STORAGE_FAMILIES = frozenset({"g5", "g6", "g6e", "p5", "p5e", "p5en", "trn1", "trn1n", "trn2"})
_D_FAMILY = re.compile(r"^[a-z]+\d+[a-z]*d[a-z]*$")


def has_local_storage(instance_type: str) -> bool:
    """Whether an ``ml.*`` instance type trains on local NVMe storage.

    Examples
    --------
    >>> has_local_storage("ml.g4dn.xlarge"), has_local_storage("ml.m5.xlarge")
    (True, False)
    """
    parts = instance_type.split(".")
    family = parts[1] if len(parts) >= 3 else instance_type
    return family in _LOCAL_STORAGE_FAMILIES or bool(_D_FAMILY.match(family))


def build_create_training_job_request(
    spec: JobSpec,
    *,
    role_arn: str,
    image_uri: str,
    kms_key_id: str | None = None,
    vpc: VpcConfig | None = None,
) -> dict[str, Any]:
    """The ``CreateTrainingJob`` parameters for ``spec``.

    The image runs its own ``train`` entry; the job module is named by the
    ``DOCLLM_ENTRY_POINT`` environment variable and the ``entry_point``
    hyperparameter. ``spec.vpc`` wins over ``vpc`` (the runner's default).

    Parameters
    ----------
    spec:
        The job.
    role_arn:
        Execution role SageMaker assumes.
    image_uri:
        ECR image of ``spec.image``.
    kms_key_id:
        Encrypts the output artefacts and, where the instance has no local
        storage, the training volume.
    vpc:
        Default subnets and security groups.

    Raises
    ------
    ConfigurationError
        ``max_wait_s`` shorter than ``max_runtime_s`` on a spot job.

    Examples
    --------
    >>> spec = JobSpec(name="tok-1", image="tokenizer", entry_point="docllm.jobs.tokenizer_job",
    ...                channels={"train": "s3://d/v1/"}, output_uri="s3://m/tok/")
    >>> req = build_create_training_job_request(spec, role_arn="arn:aws:iam::1:role/r", image_uri="img")
    >>> req["HyperParameters"]["entry_point"], req["InputDataConfig"][0]["ChannelName"]
    ('docllm.jobs.tokenizer_job', 'train')
    """
    environment = {**spec.environment, ENTRY_POINT_ENV: spec.entry_point}
    hyperparameters = {
        **{str(k): str(v) for k, v in spec.hyperparameters.items()},
        ENTRY_POINT_HYPERPARAMETER: spec.entry_point,
    }
    resource: dict[str, Any] = {
        "InstanceType": spec.instance_type,
        "InstanceCount": spec.instance_count,
        "VolumeSizeInGB": spec.volume_gb,
    }
    if kms_key_id and not has_local_storage(spec.instance_type):
        resource["VolumeKmsKeyId"] = kms_key_id
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": spec.max_runtime_s}
    if spec.spot:
        # SageMaker requires wait >= runtime; by default allow as long again to wait for capacity.
        max_wait = spec.max_wait_s if spec.max_wait_s is not None else 2 * spec.max_runtime_s
        if max_wait < spec.max_runtime_s:
            raise ConfigurationError(
                f"job {spec.name}: max_wait_s ({max_wait}) must be >= max_runtime_s ({spec.max_runtime_s})"
            )
        stopping["MaxWaitTimeInSeconds"] = max_wait
    output: dict[str, Any] = {"S3OutputPath": spec.output_uri}
    if kms_key_id:
        output["KmsKeyId"] = kms_key_id

    request: dict[str, Any] = {
        "TrainingJobName": spec.name,
        "RoleArn": role_arn,
        "AlgorithmSpecification": {"TrainingImage": image_uri, "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters,
        "OutputDataConfig": output,
        "ResourceConfig": resource,
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spec.spot,
        "Environment": environment,
    }
    if spec.channels:
        request["InputDataConfig"] = [
            {
                "ChannelName": name,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for name, uri in sorted(spec.channels.items())
        ]
    if spec.checkpoint_uri:
        request["CheckpointConfig"] = {"S3Uri": spec.checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH}
    chosen_vpc = spec.vpc or vpc
    if chosen_vpc is not None:
        request["VpcConfig"] = {
            "Subnets": list(chosen_vpc.subnets),
            "SecurityGroupIds": list(chosen_vpc.security_group_ids),
        }
    if spec.instance_count > 1:
        request["EnableInterContainerTrafficEncryption"] = True
    if spec.tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())]
    return request


class SageMakerJobRunner(JobRunner):
    """Run :class:`JobSpec` jobs as SageMaker training jobs.

    Parameters
    ----------
    role_arn:
        Execution role of the jobs whose image ``role_arns`` does not name.
    role_arns:
        ``spec.image`` → execution role of that image's jobs: evaluation jobs run user-supplied
        benchmark templates, so their role may write ``evaluations/`` only, never the weights.
    image_uris:
        ``spec.image`` (``"tokenizer"``, ``"train"``, ``"evaluate"``) → ECR image URI.
    kms_key_id:
        KMS key for artefacts and volumes.
    vpc:
        Default network placement (a spec's own ``vpc`` wins).
    client:
        A boto3 SageMaker client; built on first use when omitted.

    Examples
    --------
    >>> runner = SageMakerJobRunner(role_arn="arn:aws:iam::1:role/jobs", image_uris={"train": "img", "evaluate": "e"},
    ...                             role_arns={"evaluate": "arn:aws:iam::1:role/evaluate"})
    >>> runner.role_for("evaluate"), runner.role_for("train")
    ('arn:aws:iam::1:role/evaluate', 'arn:aws:iam::1:role/jobs')
    >>> runner.describe("train-42")  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        role_arn: str | None = None,
        image_uris: dict[str, str],
        role_arns: dict[str, str] | None = None,
        kms_key_id: str | None = None,
        vpc: VpcConfig | None = None,
        client: SageMakerClient | None = None,
    ) -> None:
        self.role_arn = role_arn
        self.role_arns = dict(role_arns or {})
        self.image_uris = dict(image_uris)
        self.kms_key_id = kms_key_id
        self.vpc = vpc
        self._client = client

    @property
    def client(self) -> SageMakerClient:
        if self._client is None:
            self._client = boto3.client("sagemaker")
        return self._client

    def role_for(self, image: str) -> str:
        """The execution role of ``image``'s jobs: its own in ``role_arns``, else ``role_arn``.

        Raises
        ------
        ConfigurationError
            Neither is configured.
        """
        role = self.role_arns.get(image) or self.role_arn
        if not role:
            raise ConfigurationError(
                f"no execution role configured for job image {image!r} (roles for: {sorted(self.role_arns)})"
            )
        return role

    def submit(self, spec: JobSpec) -> str:
        """Create the training job, as the role of its image; return its ARN.

        Raises
        ------
        ConfigurationError
            No image or no execution role configured for ``spec.image``.
        ConflictError
            A job of this name exists (``ResourceInUse``): already submitted.
        """
        image_uri = self.image_uris.get(spec.image)
        if not image_uri:
            raise ConfigurationError(
                f"no image URI configured for job image {spec.image!r} (have: {sorted(self.image_uris)})"
            )
        request = build_create_training_job_request(
            spec, role_arn=self.role_for(spec.image), image_uri=image_uri, kms_key_id=self.kms_key_id, vpc=self.vpc
        )
        with aws_errors(f"SageMaker CreateTrainingJob {spec.name}"):
            resp = self.client.create_training_job(**request)
        return resp["TrainingJobArn"]

    def describe(self, name: str) -> JobDescription:
        """Status, failure reason, artefacts, hyperparameters and tags of a job.

        Raises
        ------
        NotFoundError
            No job of that name.
        """
        self._check_name(name)
        # SageMaker answers an unknown job with ValidationException (not a NotFound code);
        # the name's syntax was checked above, so here that code can only mean "no such job".
        overrides = {"ValidationException": AwsNotFoundError}
        with aws_errors(f"SageMaker DescribeTrainingJob {name}", overrides=overrides):
            job = self.client.describe_training_job(TrainingJobName=name)
        tags: dict[str, str] = {}
        paginator = self.client.get_paginator("list_tags")
        with aws_errors(f"SageMaker ListTags {name}"):
            for page in paginator.paginate(ResourceArn=job["TrainingJobArn"]):
                tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        status: JobStatus = job["TrainingJobStatus"]
        return JobDescription(
            name=job["TrainingJobName"],
            status=status,
            failure_reason=job.get("FailureReason"),
            model_artifacts_uri=job.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
            hyperparameters=dict(job.get("HyperParameters") or {}),
            tags=tags,
        )

    def stop(self, name: str) -> None:
        """Ask SageMaker to stop the job (it goes ``Stopping`` then ``Stopped``).

        Stopping a job that has already ended is a no-op, so a retried stop
        is safe.

        Raises
        ------
        NotFoundError
            No job of that name.
        """
        self._check_name(name)
        try:
            with aws_errors(f"SageMaker StopTrainingJob {name}"):
                self.client.stop_training_job(TrainingJobName=name)
        except AwsPermanentError as e:
            # ValidationException covers both "no such job" and "job not running":
            # DescribeTrainingJob tells them apart without reading the message.
            if e.code != "ValidationException":
                raise
            if self.describe(name).status == "InProgress":
                raise

    @staticmethod
    def _check_name(name: str) -> None:
        if not _JOB_NAME.match(name):
            raise NotFoundError(f"{name!r} is not a valid training job name, so no such job exists")
