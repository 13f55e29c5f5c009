"""SageMaker Model Registry adapter of :class:`docllm.ports.registry.ModelRegistry`.

One model package group per family and stage (``docllm-<stage>-<family>``,
tagged with both), one versioned model package per model version:

- ``ModelApprovalStatus`` is the approval status (created ``PendingManualApproval``);
- ``MetadataProperties`` holds the commit, repository and training job;
- ``CustomerMetadataProperties`` holds the model version, family, stage, dataset,
  tokenizer, evaluation and export ids and the headline metrics (see
  :mod:`docllm.registry.metadata`), and on a rolled-back version the alarm and incident
  that rolled it back (``docllm:rolled-back``: ``ModelApprovalStatus`` is ``Rejected``,
  the only status SageMaker has for it);
- ``ModelMetrics.ModelQuality.Statistics`` points at the evaluation report with its
  ``sha256:`` content digest;
- no ``InferenceSpecification``: the package is a registry entry; the deployer adds
  the serving container later (``UpdateModelPackage`` accepts one).

SageMaker emits "SageMaker Model Package State Change" on the default bus for the
creation and every approval change itself, so this adapter publishes nothing.

Aliases are tags of the family's group (``docllm:alias:champion`` = model version):
the group is the family's one record, tags are writable by the gate's role alone,
and reading them is one call. Setting an alias is one ``AddTags``, which replaces the
tag's value on SageMaker: the alias is never absent, even for a moment or after a crash.

A model version is found by describing the packages of its group (newest first),
since SageMaker indexes packages by ARN, not by our ids. Each adapter instance keeps
the version -> ARN of every package it described, so in a warm process a lookup is one
``DescribeModelPackage``; a miss searches the family's group first when the caller
names the family, the other groups only if the version is not there.

:func:`build_create_model_package_request` is pure, so its shape can be checked
against botocore's service model without AWS.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import boto3

from docllm.adapters.aws.errors import AwsError, AwsNotFoundError, aws_errors
from docllm.exceptions import NotFoundError
from docllm.ports.registry import ModelRegistry
from docllm.registry.metadata import (
    FAMILY,
    MODEL_VERSION,
    ROLLBACK_INCIDENT,
    ROLLBACK_KEYS,
    ROLLED_BACK_ALARM,
    STAGE,
    client_token,
    customer_metadata,
    metadata_properties,
    model_metrics,
    rollback_metadata,
    spec_fields_from,
)
from docllm.registry.models import (
    ApprovalStatus,
    ModelPackage,
    PackageSpec,
    group_name,
)

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

ALIAS_TAG_PREFIX: Final = "docllm:alias:"
FAMILY_TAG: Final = "docllm:family"
STAGE_TAG: Final = "docllm:stage"

# SageMaker answers Describe* of an unknown group or package with ValidationException; the names
# we send are valid by construction, so here that code can only mean "no such thing".
_MISSING: Final[dict[str, type[AwsError]]] = {"ValidationException": AwsNotFoundError}


def build_create_model_package_request(spec: PackageSpec, *, stage: str) -> dict[str, Any]:
    """The ``CreateModelPackage`` parameters registering ``spec`` in its family's group.

    Examples
    --------
    >>> spec = PackageSpec(model_version="m1", family="smoke", export_uri="s3://b/m1/hf/",
    ...     report_uri="s3://b/e1/report.json", report_sha256="ab" * 32, evaluation_id="e1")
    >>> req = build_create_model_package_request(spec, stage="dev")
    >>> req["ModelPackageGroupName"], req["ModelApprovalStatus"]
    ('docllm-dev-smoke', 'PendingManualApproval')
    """
    request: dict[str, Any] = {
        "ModelPackageGroupName": group_name(stage, spec.family),
        "ModelApprovalStatus": "PendingManualApproval",
        "CustomerMetadataProperties": customer_metadata(spec, stage=stage),
        "ModelMetrics": model_metrics(spec),
        "ClientToken": client_token(stage, spec.model_version),
    }
    if spec.description:
        request["ModelPackageDescription"] = spec.description
    lineage = metadata_properties(spec)
    if lineage:
        request["MetadataProperties"] = lineage
    return request


class SageMakerModelRegistry(ModelRegistry):
    """Parameters
    ----------
    stage:
        Names the groups and is stored on every package, so stages sharing an account stay apart.
    client:
        A ``sagemaker`` client; one is created on first use when omitted.
    """

    def __init__(self, *, stage: str, client: SageMakerClient | None = None) -> None:
        self.stage = stage
        self._client = client
        # model version -> package ARN of every package described (ARNs never change; a deleted
        # package is noticed when describing it fails, and searched for again).
        self._arns: dict[str, str] = {}

    @property
    def client(self) -> SageMakerClient:
        if self._client is None:
            self._client = boto3.client("sagemaker")
        return self._client

    # -- port ------------------------------------------------------------------------------------
    def register(self, spec: PackageSpec) -> ModelPackage:
        existing = self._find(spec.model_version, first=spec.family)
        if existing is not None:
            return existing
        self._ensure_group(spec.family)
        request = build_create_model_package_request(spec, stage=self.stage)
        with aws_errors(f"SageMaker CreateModelPackage {spec.model_version}"):
            arn = self.client.create_model_package(**request)["ModelPackageArn"]
        package = self._describe(arn)
        if package is None:  # pragma: no cover - we just wrote the metadata it reads
            raise NotFoundError(f"model package {arn} lacks the docllm metadata it was created with")
        return package

    def get(self, model_version: str, *, family: str | None = None) -> ModelPackage:
        package = self._find(model_version, first=family)
        if package is None:
            raise NotFoundError(f"no registered model version {model_version!r}")
        return package

    def get_by_arn(self, package_arn: str) -> ModelPackage:
        package = self._describe(package_arn)  # NotFoundError for an unknown ARN
        if package is None:
            raise NotFoundError(f"model package {package_arn} is not a docllm package of stage {self.stage!r}")
        return package

    def list(self, family: str | None = None) -> builtins.list[ModelPackage]:
        groups = [group_name(self.stage, family)] if family is not None else self._group_names()
        packages = [
            p for g in groups for p in self._packages(g, newest_first=False) if family is None or p.family == family
        ]
        return sorted(packages, key=lambda p: (p.created_at, p.group, p.package_version))

    def set_status(self, model_version: str, status: ApprovalStatus, description: str) -> ModelPackage:
        text = self._checked_status(status, description)
        package = self.get(model_version)
        if (package.status, package.approval_description) == (status, text):
            return package  # SageMaker announced the change when it was made: nothing to redo
        spec = PackageSpec.model_validate(
            {k: v for k, v in package.model_dump().items() if k in PackageSpec.model_fields}
        )
        request: dict[str, Any] = {
            "ModelPackageArn": package.package_arn,
            "ModelApprovalStatus": status,
            "ApprovalDescription": text,
            # The metadata again, unchanged: SageMaker merges it (a no-op), and moto, which
            # replaces the map on every update, keeps the ids the registry finds packages by.
            "CustomerMetadataProperties": customer_metadata(spec, stage=self.stage),
        }
        if package.rolled_back_alarm is not None:
            # A decision after a rollback replaces it: the marker goes (SageMaker would keep merged keys).
            request["CustomerMetadataPropertiesToRemove"] = list(ROLLBACK_KEYS)
        with aws_errors(f"SageMaker UpdateModelPackage {model_version}"):
            self.client.update_model_package(**request)
        updated = self._describe(package.package_arn)
        assert updated is not None
        return updated

    def mark_rolled_back(self, model_version: str, *, alarm: str, incident_id: str, description: str) -> ModelPackage:
        text = self._checked_status("Rejected", description)
        package = self.get(model_version)
        marker = rollback_metadata(alarm, incident_id)
        if (package.status, package.approval_description, package.rolled_back_alarm, package.rollback_incident) == (
            "Rejected",
            text,
            marker[ROLLED_BACK_ALARM],
            marker[ROLLBACK_INCIDENT],
        ):
            return package
        spec = PackageSpec.model_validate(
            {k: v for k, v in package.model_dump().items() if k in PackageSpec.model_fields}
        )
        with aws_errors(f"SageMaker UpdateModelPackage {model_version} (rolled back)"):
            # ModelApprovalStatus knows no "RolledBack": Rejected, marked in the customer metadata.
            self.client.update_model_package(
                ModelPackageArn=package.package_arn,
                ModelApprovalStatus="Rejected",
                ApprovalDescription=text,
                CustomerMetadataProperties={**customer_metadata(spec, stage=self.stage), **marker},
            )
        updated = self._describe(package.package_arn)
        assert updated is not None
        return updated

    def aliases(self, family: str) -> dict[str, str]:
        arn = self._group_arn(group_name(self.stage, family))
        if arn is None:
            return {}
        out: dict[str, str] = {}
        # Last one wins: AddTags overwrites a key on SageMaker; moto appends, newest last.
        for key, value in self._tags(arn):
            if key.startswith(ALIAS_TAG_PREFIX):
                out[key[len(ALIAS_TAG_PREFIX) :]] = value
        return dict(sorted(out.items()))

    def _write_alias(self, family: str, alias: str, model_version: str | None) -> None:
        arn = self._ensure_group(family)
        key = ALIAS_TAG_PREFIX + alias
        with aws_errors(f"SageMaker tags of {arn}"):
            if model_version is None:
                self.client.delete_tags(ResourceArn=arn, TagKeys=[key])
            else:
                # AddTags replaces the value in one step; deleting first would leave the family
                # without the alias in between (for good, after a crash). moto appends instead:
                # :meth:`aliases` reads the last value of a key.
                self.client.add_tags(ResourceArn=arn, Tags=[{"Key": key, "Value": model_version}])

    # -- groups ------------------------------------------------------------------------------------
    def _ensure_group(self, family: str) -> str:
        """The ARN of the family's group, created (tagged with family and stage) on first use."""
        name = group_name(self.stage, family)
        arn = self._group_arn(name)
        if arn is not None:
            return arn
        tags = [{"Key": FAMILY_TAG, "Value": family}, {"Key": STAGE_TAG, "Value": self.stage}]
        try:
            with aws_errors(f"SageMaker CreateModelPackageGroup {name}"):
                return self.client.create_model_package_group(
                    ModelPackageGroupName=name,
                    ModelPackageGroupDescription=f"docllm {family} models ({self.stage})",
                    Tags=tags,
                )["ModelPackageGroupArn"]
        except AwsError:
            # Another process created it first (SageMaker refuses a second group of the same name):
            # the group existing now is success. Decided by looking, not by the error's wording.
            arn = self._group_arn(name)
            if arn is None:
                raise
            return arn

    def _group_arn(self, name: str) -> str | None:
        try:
            with aws_errors(f"SageMaker DescribeModelPackageGroup {name}", overrides=_MISSING):
                arn = self.client.describe_model_package_group(ModelPackageGroupName=name)["ModelPackageGroupArn"]
        except NotFoundError:
            return None
        return arn

    def _group_names(self) -> builtins.list[str]:
        """Every group of this stage (by name; packages are filtered by their stage metadata too)."""
        prefix = group_name(self.stage, "x")[:-1]
        names: builtins.list[str] = []
        paginator = self.client.get_paginator("list_model_package_groups")
        with aws_errors(f"SageMaker ListModelPackageGroups {prefix}"):
            for page in paginator.paginate(NameContains=prefix):
                for group in page.get("ModelPackageGroupSummaryList", []):
                    if group["ModelPackageGroupName"].startswith(prefix):
                        names.append(group["ModelPackageGroupName"])
        return names

    def _tags(self, arn: str) -> Iterator[tuple[str, str]]:
        paginator = self.client.get_paginator("list_tags")
        with aws_errors(f"SageMaker ListTags {arn}"):
            for page in paginator.paginate(ResourceArn=arn):
                for tag in page.get("Tags", []):
                    yield tag["Key"], tag["Value"]

    # -- packages ----------------------------------------------------------------------------------
    def _find(self, model_version: str, *, first: str | None = None) -> ModelPackage | None:
        """The package of ``model_version`` in any group of the stage: by its known ARN, else
        searched (``first``'s group first, the others listed only when it is not there)."""
        known = self._arns.get(model_version)
        if known is not None:
            try:
                package = self._describe(known)
            except NotFoundError:
                package = None  # deleted since: search again
            if package is not None and package.model_version == model_version:
                return package
            self._arns.pop(model_version, None)
        searched: set[str] = set()
        if first is not None:
            preferred = group_name(self.stage, first)
            searched.add(preferred)
            found = self._search(preferred, model_version)
            if found is not None:
                return found
        for group in self._group_names():
            if group not in searched:
                found = self._search(group, model_version)
                if found is not None:
                    return found
        return None

    def _search(self, group: str, model_version: str) -> ModelPackage | None:
        for package in self._packages(group, newest_first=True):
            if package.model_version == model_version:
                return package
        return None

    def _packages(self, group: str, *, newest_first: bool) -> Iterator[ModelPackage]:
        """The group's docllm packages of this stage, described one by one (lazily)."""
        arns: builtins.list[str] = []
        paginator = self.client.get_paginator("list_model_packages")
        try:
            with aws_errors(f"SageMaker ListModelPackages {group}", overrides=_MISSING):
                for page in paginator.paginate(
                    ModelPackageGroupName=group,
                    ModelPackageType="Versioned",
                    SortBy="CreationTime",
                    SortOrder="Descending" if newest_first else "Ascending",
                ):
                    arns.extend(s["ModelPackageArn"] for s in page.get("ModelPackageSummaryList", []))
        except NotFoundError:
            return
        for arn in arns:
            package = self._describe(arn)
            if package is not None:
                yield package

    def _describe(self, arn: str) -> ModelPackage | None:
        """The package at ``arn``; ``None`` for a package docllm did not register (or another stage's)."""
        with aws_errors(f"SageMaker DescribeModelPackage {arn}", overrides=_MISSING):
            desc = self.client.describe_model_package(ModelPackageName=arn)
        customer = dict(desc.get("CustomerMetadataProperties") or {})
        if MODEL_VERSION not in customer or FAMILY not in customer or customer.get(STAGE) != self.stage:
            return None
        created = _utc(desc["CreationTime"])
        fields = spec_fields_from(
            customer, dict(desc.get("MetadataProperties") or {}), dict(desc.get("ModelMetrics") or {})
        )
        package = ModelPackage(
            **fields,
            group=desc["ModelPackageGroupName"],
            package_arn=desc["ModelPackageArn"],
            package_version=desc["ModelPackageVersion"],
            status=desc["ModelApprovalStatus"],
            approval_description=desc.get("ApprovalDescription") or None,
            created_at=created,
            updated_at=_utc(desc.get("LastModifiedTime") or created),
            description=desc.get("ModelPackageDescription") or "",
            last_modified_by=modifier_name(desc.get("LastModifiedBy")),
        )
        self._arns[package.model_version] = package.package_arn
        return package


def modifier_name(who: Mapping[str, Any] | None) -> str | None:
    """Who changed a package, from SageMaker's ``UserContext`` (``LastModifiedBy``): the Studio user
    profile, else the IAM identity's ARN, else the Studio domain.

    >>> modifier_name({"IamIdentity": {"Arn": "arn:aws:sts::123456789012:assumed-role/Admin/alice"}})
    'arn:aws:sts::123456789012:assumed-role/Admin/alice'
    >>> modifier_name({"UserProfileName": "alice", "DomainId": "d-1"}), modifier_name({}), modifier_name(None)
    ('alice', None, None)
    """
    if not who:
        return None
    iam = who.get("IamIdentity") or {}
    name = who.get("UserProfileName") or (iam.get("Arn") if isinstance(iam, Mapping) else None) or who.get("DomainId")
    return str(name) if name else None


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
