"""The model registry's domain: what a registered model version is, its approval status and aliases.

Pure (pydantic and the standard library): the gate, the CLI and both registry adapters share it.
Field limits follow what SageMaker accepts for the same values (``CustomerMetadataProperties``
values, group names, descriptions), so a spec the local registry accepts is one SageMaker accepts
too, and both adapters refuse the same specs.

>>> group_name("dev", "tiny-s3")
'docllm-dev-tiny-s3'
>>> group_name("Prod", "unified-1.3b")
'docllm-prod-unified-1-3b'
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from docllm.exceptions import PermanentError

ApprovalStatus = Literal["PendingManualApproval", "Approved", "Rejected"]
APPROVAL_STATUSES: Final[tuple[ApprovalStatus, ...]] = ("PendingManualApproval", "Approved", "Rejected")

#: What ``docllm models`` shows for a version an alarm rolled back. Not an approval status: SageMaker's
#: ``ModelApprovalStatus`` has only the three above, so a rolled-back version is ``Rejected`` with a
#: marker both registries store (``CustomerMetadataProperties`` ``docllm:rolled-back`` = the alarm).
ROLLED_BACK: Final = "RolledBack"

Alias = Literal["champion", "previous_champion"]
CHAMPION: Final = "champion"
PREVIOUS_CHAMPION: Final = "previous_champion"
ALIASES: Final[tuple[Alias, ...]] = ("champion", "previous_champion")

#: Characters SageMaker allows in a ``CustomerMetadataProperties`` value (and in tag values):
#: letters, digits, spaces and ``_.:/=+-@``. Versions, URIs and ids are stored there on AWS.
META_VALUE_PATTERN: Final = r"^[\w.:/=+\-@ ]+$"
#: A metric's name becomes part of a metadata key (``docllm:metric:<name>``, at most 128 characters).
METRIC_NAME_PATTERN: Final = r"^[A-Za-z0-9_.:/=+\-@]{1,100}$"
#: SageMaker allows 50 ``CustomerMetadataProperties``; the registry's own keys take at most 10.
MAX_METRICS: Final = 40
MAX_DESCRIPTION: Final = 1024

MetaValue = Annotated[str, Field(pattern=META_VALUE_PATTERN, min_length=1, max_length=256)]
"""A value stored in SageMaker's ``CustomerMetadataProperties`` (1 to 256 allowed characters)."""

_GROUP_NAME = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class NotApprovedError(PermanentError):
    """An alias (champion, previous champion) may only name an Approved model version.

    This is the registry's share of "no path to deployment bypasses the gate": retrying cannot
    help until the version's status changes.
    """

    def __init__(self, model_version: str, alias: str, status: str) -> None:
        super().__init__(f"cannot make {model_version!r} the {alias}: its status is {status}, not Approved")
        self.model_version = model_version
        self.alias = alias
        self.status = status


class RegistryError(PermanentError):
    """A registry request is wrong in itself (an unknown alias, a version of another family)."""


def clean_description(text: str | None) -> str:
    """``text`` as both registries store it: one line (SageMaker's description patterns refuse
    control characters, newlines included), trimmed, at most 1024 characters.

    >>> clean_description("  gate:\\nperplexity ok  ")
    'gate: perplexity ok'
    """
    return " ".join(_CONTROL.sub(" ", text or "").split())[:MAX_DESCRIPTION]


def group_name(stage: str, family: str) -> str:
    """The model package group of ``family`` in ``stage``: ``docllm-<stage>-<family>``, made valid
    for SageMaker (lower case, letters, digits and hyphens, at most 63 characters).

    Deterministic, so every process finds the same group. Characters SageMaker refuses
    (``.`` in ``unified-1.3b``) become hyphens; a name too long keeps a prefix and gets a
    hash of the full name, so two long names stay distinct.
    """
    raw = f"docllm-{stage}-{family}".lower()
    name = re.sub(r"[^a-z0-9-]+", "-", raw)
    name = re.sub(r"-{2,}", "-", name).strip("-")
    if len(name) > 63:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    if not _GROUP_NAME.match(name):
        raise RegistryError(f"cannot derive a model package group name from stage {stage!r} and family {family!r}")
    return name


class PackageSpec(BaseModel):
    """What the gate registers for one model version: where it is, how it scored, where it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_version: MetaValue = Field(description="the model version id, unique")
    family: MetaValue = Field(description="the model family (families.yaml)")
    export_uri: MetaValue = Field(description="s3:// prefix of the Hugging Face export")
    report_uri: str = Field(pattern=r"^(s3|https)://[^/]+/?.*$", max_length=1024, description="report.json")
    report_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of report.json's bytes")
    metrics: dict[str, float] = Field(default_factory=dict, description="the gate's headline metrics")
    dataset_version: MetaValue | None = Field(default=None)
    tokenizer_version: MetaValue | None = Field(default=None)
    training_job: MetaValue | None = Field(default=None, description="name or ARN")
    evaluation_id: MetaValue = Field(description="the evaluation job whose report this is")
    commit: str | None = Field(default=None, max_length=1024, description="git commit of the training code")
    repository: str | None = Field(default=None, max_length=1024, description="git repository URL")
    description: str = Field(default="", description="free text; stored on one line, cut at 1024 characters")

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, metrics: dict[str, float]) -> dict[str, float]:
        if len(metrics) > MAX_METRICS:
            raise ValueError(f"at most {MAX_METRICS} metrics can be registered, not {len(metrics)}")
        for name in metrics:
            if not re.match(METRIC_NAME_PATTERN, name):
                raise ValueError(f"metric name {name!r} must match {METRIC_NAME_PATTERN}")
        return metrics

    @field_validator("description")
    @classmethod
    def _one_line(cls, text: str) -> str:
        return clean_description(text)


class ModelPackage(BaseModel):
    """One registered model version, as either registry reports it."""

    model_config = ConfigDict(frozen=True)

    model_version: str
    family: str
    group: str = Field(description="the model package group (one per family and stage)")
    package_arn: str = Field(description="the SageMaker ARN (a local look-alike on the local registry)")
    package_version: int = Field(ge=1, description="1, 2, ... within the group, in registration order")
    status: ApprovalStatus
    approval_description: str | None = None
    created_at: datetime
    updated_at: datetime
    metrics: dict[str, float] = Field(default_factory=dict)
    report_uri: str
    report_sha256: str
    export_uri: str
    dataset_version: str | None = None
    tokenizer_version: str | None = None
    training_job: str | None = None
    evaluation_id: str
    commit: str | None = None
    repository: str | None = None
    description: str = ""
    last_modified_by: str | None = Field(
        default=None,
        description="who last changed the package, as SageMaker records it (a Studio user profile, else an "
        "IAM identity ARN, else a domain id); None on the local registry, where only docllm changes packages",
    )

    rolled_back_alarm: str | None = Field(
        default=None,
        description="the alarm whose incident rolled this version back (set with status Rejected; any later "
        "status change clears it)",
    )
    rollback_incident: str | None = Field(default=None, description="the incident of that rollback")

    @property
    def approved(self) -> bool:
        return self.status == "Approved"

    @property
    def rolled_back(self) -> bool:
        """Rejected by an automatic rollback (SageMaker has no such approval status: see
        :data:`ROLLED_BACK`)."""
        return self.status == "Rejected" and self.rolled_back_alarm is not None

    @property
    def display_status(self) -> str:
        """The status people see: the approval status, or ``RolledBack`` for a rolled-back version."""
        return ROLLED_BACK if self.rolled_back else self.status
