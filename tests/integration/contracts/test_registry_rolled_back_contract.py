"""ModelRegistry contract, rollback marker: both registries hold a rolled-back version the same way
(``Rejected`` plus ``docllm:rolled-back`` = the alarm), and a later decision clears it.

SageMaker's ``ModelApprovalStatus`` has no RolledBack; the requests that mark and unmark are held to
botocore's service model here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.validate import validate_parameters

from docllm.exceptions import NotFoundError
from docllm.ports.registry import ModelRegistry
from docllm.registry.metadata import ROLLBACK_INCIDENT, ROLLED_BACK_ALARM
from docllm.registry.models import NotApprovedError, PackageSpec
from tests.integration.aws.test_sagemaker_registry import constraint_errors
from tests.integration.contracts.conftest import REGION, STAGE, RecordingBus

ALARM = "docllm-test-serving-5xx-rate@m2"


def spec(version: str) -> PackageSpec:
    return PackageSpec(
        model_version=version,
        family="tiny-s3",
        export_uri=f"s3://artifacts/models/tiny-s3/{version}/hf/",
        report_uri=f"s3://artifacts/evaluations/eval-{version}/report.json",
        report_sha256="ab" * 32,
        metrics={"heldout_loss": 3.25},
        evaluation_id=f"eval-{version}",
    )


def approved(registry: ModelRegistry, version: str) -> None:
    registry.register(spec(version))
    registry.set_status(version, "Approved", "gate: every rule passed")


def test_a_rolled_back_version_is_rejected_with_the_alarm_as_its_reason(registry: ModelRegistry) -> None:
    approved(registry, "m2")
    package = registry.mark_rolled_back("m2", alarm=ALARM, incident_id="inc1", description="docllm:rollback: 5xx")

    assert package.status == "Rejected" and package.rolled_back and package.display_status == "RolledBack"
    assert (package.rolled_back_alarm, package.rollback_incident) == (ALARM, "inc1")
    assert package.approval_description == "docllm:rollback: 5xx"
    assert registry.get("m2") == package and registry.list() == [package]
    assert package.metrics == {"heldout_loss": 3.25}  # the rest of the metadata stays
    with pytest.raises(NotApprovedError):
        registry.set_alias("tiny-s3", "champion", "m2")


def test_marking_again_changes_nothing(registry: ModelRegistry) -> None:
    approved(registry, "m2")
    first = registry.mark_rolled_back("m2", alarm=ALARM, incident_id="inc1", description="rolled back")
    again = registry.mark_rolled_back("m2", alarm=ALARM, incident_id="inc1", description="rolled back")
    assert again == first


def test_a_later_decision_replaces_the_rollback(registry: ModelRegistry) -> None:
    approved(registry, "m2")
    registry.mark_rolled_back("m2", alarm=ALARM, incident_id="inc1", description="rolled back")

    package = registry.set_status("m2", "Approved", "alice: the fault was the load balancer")

    assert package.status == "Approved" and not package.rolled_back and package.rolled_back_alarm is None
    rejected = registry.set_status("m2", "Rejected", "alice: no, really bad")
    assert rejected.display_status == "Rejected" and rejected.rollback_incident is None


def test_marking_an_unknown_version_is_not_found(registry: ModelRegistry) -> None:
    with pytest.raises(NotFoundError):
        registry.mark_rolled_back("nobody", alarm=ALARM, incident_id="i", description="x")


def test_the_local_registry_announces_the_marker_as_sagemaker_stores_it(tmp_path: Path) -> None:
    from docllm.adapters.local.registry import LocalModelRegistry

    bus = RecordingBus()
    registry = LocalModelRegistry(tmp_path / "registry.db", default_bus=bus, stage=STAGE)
    approved(registry, "m2")
    registry.mark_rolled_back("m2", alarm=ALARM, incident_id="inc1", description="[docllm decision rollback-inc1] x")

    last = bus.events[-1].detail
    assert last["ModelApprovalStatus"] == "Rejected"
    assert last["CustomerMetadataProperties"][ROLLED_BACK_ALARM] == ALARM
    assert last["CustomerMetadataProperties"][ROLLBACK_INCIDENT] == "inc1"
    assert last["ApprovalDescription"] == "[docllm decision rollback-inc1] x"


def test_the_marking_requests_match_sagemakers_service_model(moto_account: None) -> None:
    from docllm.adapters.aws.sagemaker_registry import SageMakerModelRegistry

    client = boto3.client("sagemaker", region_name=REGION)
    calls: list[tuple[str, dict[str, Any]]] = []
    client.meta.events.register(
        "provide-client-params.sagemaker.*", lambda params, model, **_: calls.append((model.name, dict(params)))
    )
    registry = SageMakerModelRegistry(stage=STAGE, client=client)
    approved(registry, "m2")
    registry.mark_rolled_back("m2", alarm=ALARM, incident_id="inc1", description="rolled back")
    registry.set_status("m2", "Approved", "alice: fine after all")

    updates = [params for name, params in calls if name == "UpdateModelPackage"]
    marking, unmarking = updates[-2:]
    assert marking["ModelApprovalStatus"] == "Rejected"
    assert marking["CustomerMetadataProperties"][ROLLED_BACK_ALARM] == ALARM
    assert unmarking["CustomerMetadataPropertiesToRemove"] == [ROLLED_BACK_ALARM, ROLLBACK_INCIDENT]
    assert ROLLED_BACK_ALARM not in unmarking["CustomerMetadataProperties"]
    shape = client.meta.service_model.operation_model("UpdateModelPackage").input_shape
    for params in updates:
        validate_parameters(params, shape)
        assert constraint_errors(params, shape, "UpdateModelPackage") == []  # lengths, enums, patterns
