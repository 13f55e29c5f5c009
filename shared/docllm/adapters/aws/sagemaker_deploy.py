"""Deploy a model version to a SageMaker real-time endpoint (create it, or blue/green update it).

Every name is derived from (stage, family, version) (:mod:`docllm.deploy.names`),
so a redelivered "Model Approved" finds the Model and EndpointConfig the first
attempt made and reuses them, and finds the endpoint already on its config.
Requests come from :mod:`docllm.deploy.sagemaker` (pure, checked against
botocore's service model in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3

from docllm.adapters.aws.errors import AwsNotFoundError, AwsPermanentError, aws_errors
from docllm.deploy.sagemaker import (
    SageMakerNames,
    build_autoscaling_requests,
    build_sagemaker_requests,
    sagemaker_names,
)
from docllm.deploy.spec import DeploymentRecord, DeploymentSpec
from docllm.exceptions import NotFoundError, PermanentError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_sagemaker import SageMakerClient

#: SageMaker answers Describe* on an unknown name with ValidationException, not a NotFound code.
#: Our names are generated and valid, so here that code can only mean "no such resource".
_DESCRIBE_OVERRIDES = {"ValidationException": AwsNotFoundError}

#: The endpoint is mid-change: an update now would be refused; the queue retries later.
BUSY_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
#: The endpoint cannot take an update at all: someone must look (and delete it) first.
BROKEN_STATUSES = frozenset({"Failed", "UpdateRollbackFailed", "OutOfService"})

#: Per-version resource kind → (name parameter, operation suffix); client methods are create_/describe_<kind>.
_KINDS = {"model": ("ModelName", "Model"), "endpoint_config": ("EndpointConfigName", "EndpointConfig")}


@dataclass(frozen=True)
class EndpointServing:
    """What a SageMaker endpoint serves, as DescribeEndpoint and its configuration say."""

    endpoint: str
    status: str
    config: str | None
    versions: tuple[str, ...] = ()
    updating_to: str | None = None
    failure_reason: str | None = None

    @property
    def version(self) -> str | None:
        """The one version served, once the endpoint is InService with no update pending."""
        if self.status != "InService" or self.updating_to or len(self.versions) != 1:
            return None
        return self.versions[0]

    @property
    def settled(self) -> bool:
        """No change in progress: what it serves now is what it will keep serving."""
        return self.status not in BUSY_STATUSES and not self.updating_to


class EndpointBusyError(TransientError):
    """The family's endpoint is being created, updated or rolled back: deploy again later."""


class EndpointBrokenError(PermanentError):
    """The family's endpoint is in a state that takes no update (Failed, UpdateRollbackFailed)."""


class SageMakerDeployer:
    """Create or update the family's endpoint on a new model version.

    Parameters
    ----------
    client:
        A boto3 SageMaker client; built on first use when omitted.
    autoscaling_client:
        A boto3 application-autoscaling client; built on first use when omitted.

    Examples
    --------
    >>> deployer = SageMakerDeployer()
    >>> deployer.deploy(spec, stage="dev")  # doctest: +SKIP
    DeploymentRecord(target='sagemaker', model_version='v7', endpoint='docllm-dev-tiny', status='InProgress', ...)
    """

    def __init__(
        self,
        client: SageMakerClient | None = None,
        autoscaling_client: ApplicationAutoScalingClient | None = None,
    ) -> None:
        self._client = client
        self._autoscaling = autoscaling_client

    @property
    def client(self) -> SageMakerClient:
        if self._client is None:
            self._client = boto3.client("sagemaker")
        return self._client

    @property
    def autoscaling(self) -> ApplicationAutoScalingClient:
        if self._autoscaling is None:
            self._autoscaling = boto3.client("application-autoscaling")
        return self._autoscaling

    # --- deploy

    def deploy(self, spec: DeploymentSpec, *, stage: str) -> DeploymentRecord:
        """Put ``spec``'s version behind the family's endpoint.

        Creates the Model and EndpointConfig (reusing them when they exist),
        then creates the endpoint, or updates it with the blue/green policy and
        auto-rollback alarms of ``spec``. Returns at once: the endpoint is
        ``InProgress`` until SageMaker reports ``InService`` (follow it with
        :meth:`status`, then call :meth:`configure_autoscaling`).

        Raises
        ------
        ConfigurationError
            The spec lacks what the target needs.
        EndpointBusyError
            The endpoint is mid-change (transient: retry later).
        EndpointBrokenError
            The endpoint is Failed / UpdateRollbackFailed / OutOfService.
        """
        names = sagemaker_names(spec, stage=stage)
        started = datetime.now(UTC)
        current = self._describe_endpoint(names.endpoint)
        details: dict[str, Any] = {
            "model_name": names.model,
            "endpoint_config_name": names.endpoint_config,
            "variant": names.variant,
        }
        if current is not None:
            details["endpoint_arn"] = current["EndpointArn"]
            status = str(current["EndpointStatus"])
            if current.get("EndpointConfigName") == names.endpoint_config:
                # Redelivery: this version is already (being) deployed; nothing to send again.
                return self._record(
                    spec, names=names, started=started, endpoint_status=status, details={**details, "action": "none"}
                )
            # Checked before creating anything: a busy endpoint is retried later, a broken one needs a person.
            if status in BUSY_STATUSES:
                raise EndpointBusyError(f"endpoint {names.endpoint} is {status}; deploy {spec.model_version} later")
            if status in BROKEN_STATUSES:
                reason = current.get("FailureReason") or "no reason given"
                raise EndpointBrokenError(f"endpoint {names.endpoint} is {status} ({reason}); it takes no update")

        requests = build_sagemaker_requests(spec, stage=stage, update=current is not None)
        self._ensure("model", requests.model)
        self._ensure("endpoint_config", requests.endpoint_config)
        if current is None:
            with aws_errors(f"SageMaker CreateEndpoint {names.endpoint}"):
                resp = self.client.create_endpoint(**requests.endpoint)
            details["endpoint_arn"] = resp["EndpointArn"]
            return self._record(
                spec, names=names, started=started, endpoint_status="Creating", details={**details, "action": "create"}
            )

        previous_config = current.get("EndpointConfigName")
        previous_version = self._config_version(previous_config)
        with aws_errors(f"SageMaker UpdateEndpoint {names.endpoint}"):
            self.client.update_endpoint(**requests.endpoint)
        details.update(action="update", previous_endpoint_config_name=previous_config)
        return self._record(
            spec,
            names=names,
            started=started,
            endpoint_status="Updating",
            previous_version=previous_version,
            details=details,
        )

    def configure_autoscaling(self, spec: DeploymentSpec, *, stage: str) -> bool:
        """Register the variant with application-autoscaling and put the target-tracking policy.

        Call once the endpoint is ``InService`` (the variant must exist); both
        calls are puts, so calling after every deployment is safe. Returns
        whether autoscaling is configured (``False`` when the spec disables it).
        """
        requests = build_autoscaling_requests(spec, stage=stage)
        if requests is None:
            return False
        resource = requests.scalable_target["ResourceId"]
        with aws_errors(f"ApplicationAutoScaling RegisterScalableTarget {resource}"):
            self.autoscaling.register_scalable_target(**requests.scalable_target)
        with aws_errors(f"ApplicationAutoScaling PutScalingPolicy {resource}"):
            self.autoscaling.put_scaling_policy(**requests.scaling_policy)
        return True

    def status(self, endpoint: str) -> str:
        """The endpoint's ``EndpointStatus`` (``Creating``, ``InService``, ``RollingBack``, …).

        Raises
        ------
        NotFoundError
            No endpoint of that name.
        """
        found = self._describe_endpoint(endpoint)
        if found is None:
            raise NotFoundError(f"no SageMaker endpoint {endpoint!r}")
        return str(found["EndpointStatus"])

    # --- what serves

    def serving(self, endpoint: str) -> EndpointServing | None:
        """What ``endpoint`` serves now: its status and the model versions of its *live* configuration.

        DescribeEndpoint names the live EndpointConfig (during a blue/green update the new one is in
        ``PendingDeploymentSummary`` until the traffic has shifted), DescribeEndpointConfig its variants'
        Models, and each Model's ``docllm:model-version`` tag the version (ListTags). ``None`` when there
        is no such endpoint.
        """
        found = self._describe_endpoint(endpoint)
        if found is None:
            return None
        config = found.get("EndpointConfigName")
        pending = (found.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
        versions = self._config_versions(config) if config else ()
        return EndpointServing(
            endpoint=endpoint,
            status=str(found["EndpointStatus"]),
            config=config,
            versions=versions,
            updating_to=pending,
            failure_reason=found.get("FailureReason"),
        )

    def serving_version(self, endpoint: str) -> str | None:
        """The one model version ``endpoint`` serves once ``InService``; ``None`` while it is changing,
        when it serves several (variants), or when there is no endpoint."""
        serving = self.serving(endpoint)
        return serving.version if serving is not None else None

    def _config_versions(self, config_name: str) -> tuple[str, ...]:
        try:
            with aws_errors(f"SageMaker DescribeEndpointConfig {config_name}", overrides=_DESCRIBE_OVERRIDES):
                config = self.client.describe_endpoint_config(EndpointConfigName=config_name)
        except AwsNotFoundError:
            return ()
        versions: list[str] = []
        for variant in config.get("ProductionVariants", []):
            model = variant.get("ModelName")
            version = self._model_version(model) if model else None
            if version is None:
                # A model docllm did not tag (made by hand): the config's own tag is the next best witness.
                version = self._config_version(config_name)
            if version is not None and version not in versions:
                versions.append(version)
        return tuple(versions)

    def _model_version(self, model_name: str) -> str | None:
        try:
            with aws_errors(f"SageMaker DescribeModel {model_name}", overrides=_DESCRIBE_OVERRIDES):
                arn = self.client.describe_model(ModelName=model_name)["ModelArn"]
            with aws_errors(f"SageMaker ListTags {model_name}"):
                tags = self.client.list_tags(ResourceArn=arn).get("Tags", [])
        except AwsNotFoundError:
            return None
        return next((t["Value"] for t in tags if t["Key"] == "docllm:model-version"), None)

    # --- helpers

    def _record(
        self,
        spec: DeploymentSpec,
        *,
        names: SageMakerNames,
        started: datetime,
        endpoint_status: str,
        details: dict[str, Any],
        previous_version: str | None = None,
    ) -> DeploymentRecord:
        details = {**details, "endpoint_status": endpoint_status}
        done = endpoint_status == "InService"
        return DeploymentRecord(
            target="sagemaker",
            model_version=spec.model_version,
            previous_version=previous_version,
            endpoint=names.endpoint,
            status="InService" if done else "Failed" if endpoint_status in BROKEN_STATUSES else "InProgress",
            started_at=started,
            finished_at=datetime.now(UTC) if done else None,
            details=details,
        )

    def _describe_endpoint(self, name: str) -> dict[str, Any] | None:
        try:
            with aws_errors(f"SageMaker DescribeEndpoint {name}", overrides=_DESCRIBE_OVERRIDES):
                return dict(self.client.describe_endpoint(EndpointName=name))
        except AwsNotFoundError:
            return None

    def _ensure(self, kind: str, request: dict[str, Any]) -> None:
        """Create the ``kind`` (``model`` or ``endpoint_config``) of ``request`` unless it exists.

        Names are per (family, version): an existing one is this version's, made
        by an earlier delivery, and is reused as it is.
        """
        key, operation = _KINDS[kind]
        name = request[key]
        if self._exists(kind, name):
            return
        try:
            with aws_errors(f"SageMaker Create{operation} {name}"):
                getattr(self.client, f"create_{kind}")(**request)
        except AwsPermanentError as e:
            # A concurrent delivery may have created it between our describe and create; SageMaker
            # reports that as ValidationException. Describe decides, never the message text.
            if e.code == "ValidationException" and self._exists(kind, name):
                return
            raise

    def _exists(self, kind: str, name: str) -> bool:
        key, operation = _KINDS[kind]
        try:
            with aws_errors(f"SageMaker Describe{operation} {name}", overrides=_DESCRIBE_OVERRIDES):
                getattr(self.client, f"describe_{kind}")(**{key: name})
        except AwsNotFoundError:
            return False
        return True

    def _config_version(self, config_name: str | None) -> str | None:
        """The model version the endpoint serves now: the tag its config was created with."""
        if not config_name:
            return None
        try:
            with aws_errors(f"SageMaker DescribeEndpointConfig {config_name}", overrides=_DESCRIBE_OVERRIDES):
                arn = self.client.describe_endpoint_config(EndpointConfigName=config_name)["EndpointConfigArn"]
            with aws_errors(f"SageMaker ListTags {config_name}"):
                tags = self.client.list_tags(ResourceArn=arn).get("Tags", [])
        except AwsNotFoundError:
            return None
        return next((t["Value"] for t in tags if t["Key"] == "docllm:model-version"), None)
