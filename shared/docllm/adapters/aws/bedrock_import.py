"""Import a model version into Amazon Bedrock (Custom Model Import) from its S3 export.

The export is inspected first (file names at the prefix, ``config.json``) and
refused with the reason when Bedrock would not accept it
(:func:`docllm.deploy.bedrock.bedrock_refusal`). The job name and the client
request token are derived from (stage, family, version), so a redelivered
deployment finds the job the first attempt started instead of starting another.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import boto3

from docllm.adapters.aws.errors import AwsNotFoundError, aws_errors
from docllm.deploy.bedrock import bedrock_import_request, bedrock_refusal
from docllm.deploy.names import versioned_name
from docllm.deploy.spec import DeploymentRecord, DeploymentSpec, DeploymentStatus
from docllm.exceptions import NotFoundError, PermanentError

if TYPE_CHECKING:
    from mypy_boto3_bedrock import BedrockClient
    from mypy_boto3_s3 import S3Client

#: A config.json larger than this is not a model config; refuse rather than read it whole.
MAX_CONFIG_BYTES = 1 << 20


class UnsupportedExportError(PermanentError):
    """The export is not one Bedrock Custom Model Import accepts; the message says why."""


class BedrockImporter:
    """Start and follow Bedrock model import jobs.

    Parameters
    ----------
    client:
        A boto3 ``bedrock`` (control plane) client; built on first use when omitted.
    s3_client:
        A boto3 S3 client, to inspect the export; built on first use when omitted.

    Examples
    --------
    >>> importer = BedrockImporter()
    >>> importer.start_import(spec, stage="dev").endpoint  # doctest: +SKIP
    'arn:aws:bedrock:us-east-1:123456789012:model-import-job/abcdefghijkl'
    """

    def __init__(self, client: BedrockClient | None = None, s3_client: S3Client | None = None) -> None:
        self._client = client
        self._s3 = s3_client

    @property
    def client(self) -> BedrockClient:
        if self._client is None:
            self._client = boto3.client("bedrock")
        return self._client

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            self._s3 = boto3.client("s3")
        return self._s3

    def start_import(self, spec: DeploymentSpec, *, stage: str) -> DeploymentRecord:
        """Start (or find) the import job of ``spec``'s version.

        Raises
        ------
        UnsupportedExportError
            Bedrock would refuse the export; the message names what is missing
            or unsupported.
        ConfigurationError
            No role, or an export URI Bedrock's pattern refuses.
        """
        request = bedrock_import_request(spec, stage=stage)
        started = datetime.now(UTC)
        existing = self._get_job(request["jobName"])
        if existing is None:
            files, config = self._inspect(spec.export_uri)
            reason = bedrock_refusal(files, config)
            if reason:
                raise UnsupportedExportError(
                    f"Bedrock cannot import {spec.model_version} from {spec.export_uri}: {reason}"
                )
            with aws_errors(f"Bedrock CreateModelImportJob {request['jobName']}"):
                job_arn = self.client.create_model_import_job(**request)["jobArn"]
            status, model_arn = "InProgress", None
        else:
            job_arn = existing["jobArn"]
            status, model_arn = existing["status"], existing.get("importedModelArn")
        details: dict[str, Any] = {
            "job_arn": job_arn,
            "job_name": request["jobName"],
            "imported_model_name": request["importedModelName"],
            "job_status": status,
            "reused": existing is not None,
        }
        if model_arn:
            details["imported_model_arn"] = model_arn
        if existing is not None and existing.get("failureMessage"):
            details["failure_message"] = existing["failureMessage"]
        record_status: DeploymentStatus = (
            "Completed" if status == "Completed" else "Failed" if status == "Failed" else "InProgress"
        )
        return DeploymentRecord(
            target="bedrock",
            model_version=spec.model_version,
            endpoint=model_arn or job_arn,
            status=record_status,
            started_at=started,
            finished_at=datetime.now(UTC) if record_status != "InProgress" else None,
            details=details,
        )

    def status(self, job_arn: str) -> tuple[str, str | None]:
        """The job's status (``InProgress``, ``Completed``, ``Failed``) and, once completed,
        the imported model's ARN (what ``InvokeModel`` takes as ``modelId``).

        Raises
        ------
        NotFoundError
            No such job.
        """
        job = self._get_job(job_arn)
        if job is None:
            raise NotFoundError(f"no Bedrock model import job {job_arn!r}")
        return str(job["status"]), job.get("importedModelArn")

    @staticmethod
    def job_name(spec: DeploymentSpec, *, stage: str) -> str:
        """The deterministic job (and imported model) name of ``spec``."""
        return versioned_name(stage, spec.family, spec.model_version)

    # --- helpers

    def _get_job(self, identifier: str) -> dict[str, Any] | None:
        try:
            with aws_errors(f"Bedrock GetModelImportJob {identifier}"):
                return dict(self.client.get_model_import_job(jobIdentifier=identifier))
        except AwsNotFoundError:
            return None

    def _inspect(self, export_uri: str) -> tuple[list[str], dict[str, Any] | None]:
        """File names at the top of the export prefix, and its parsed ``config.json``."""
        parsed = urlparse(export_uri)
        bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        files: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        with aws_errors(f"S3 ListObjectsV2 {export_uri}"):
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
                files.extend(obj["Key"][len(prefix) :] for obj in page.get("Contents", []))
        if "config.json" not in files:
            return files, None
        with aws_errors(f"S3 GetObject {export_uri}config.json"):
            body = self.s3.get_object(Bucket=bucket, Key=prefix + "config.json")["Body"].read(MAX_CONFIG_BYTES + 1)
        try:
            config = json.loads(body) if len(body) <= MAX_CONFIG_BYTES else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            config = None
        return files, config if isinstance(config, dict) else None
