"""What a SageMaker endpoint serves, read back for the rollback's verification, on botocore's Stubber
(every request and response is checked against SageMaker's service model; moto has no UpdateEndpoint).

DescribeEndpoint names the live EndpointConfig (a blue/green update keeps the new one in
``PendingDeploymentSummary`` until traffic has shifted), DescribeEndpointConfig its variants' Models,
DescribeModel + ListTags each Model's ``docllm:model-version``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from docllm.adapters.aws.deployed import CloudDeployer
from docllm.adapters.aws.sagemaker_deploy import SageMakerDeployer
from docllm.deploy import build_sagemaker_requests, sagemaker_names
from docllm.monitoring.incidents import Incident
from docllm.service_layer import rollback
from tests.integration.aws.conftest import REGION
from tests.integration.aws.test_sagemaker_deploy import Captured, arn, endpoint_description, not_found, spec
from tests.support.rollback import local_platform

T = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def stubbed() -> Iterator[tuple[SageMakerDeployer, Stubber, Captured]]:
    captured = Captured()
    client = captured.attach(boto3.client("sagemaker", region_name=REGION))
    with Stubber(client) as stub:
        yield SageMakerDeployer(client=client, autoscaling_client=None), stub, captured
        stub.assert_no_pending_responses()


def names(version: str) -> Any:
    return sagemaker_names(spec(model_version=version), stage="dev")


def expect_live_config(stub: Stubber, version: str) -> None:
    """DescribeEndpointConfig → DescribeModel → ListTags of the config serving ``version``."""
    n = names(version)
    stub.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": n.endpoint_config,
            "EndpointConfigArn": arn("endpoint-config", n.endpoint_config),
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": n.model}],
            "CreationTime": T,
        },
        {"EndpointConfigName": n.endpoint_config},
    )
    stub.add_response(
        "describe_model",
        {"ModelName": n.model, "ModelArn": arn("model", n.model), "CreationTime": T},
        {"ModelName": n.model},
    )
    stub.add_response(
        "list_tags",
        {"Tags": [{"Key": "docllm:family", "Value": "tiny"}, {"Key": "docllm:model-version", "Value": version}]},
        {"ResourceArn": arn("model", n.model)},
    )


def expect_endpoint(stub: Stubber, version: str, status: str = "InService", *, pending: str | None = None) -> None:
    extra: dict[str, Any] = {}
    if pending is not None:
        extra["PendingDeploymentSummary"] = {"EndpointConfigName": names(pending).endpoint_config, "StartTime": T}
    stub.add_response(
        "describe_endpoint",
        endpoint_description(names(version).endpoint_config, status, **extra),
        {"EndpointName": "docllm-dev-tiny"},
    )
    expect_live_config(stub, version)


def test_a_settled_endpoint_serves_the_version_its_models_tag(stubbed) -> None:
    deployer, stub, _ = stubbed
    expect_endpoint(stub, "v6")

    serving = deployer.serving("docllm-dev-tiny")

    assert serving is not None and serving.version == "v6" and serving.settled
    assert (serving.status, serving.config, serving.versions) == ("InService", names("v6").endpoint_config, ("v6",))


def test_during_a_blue_green_update_no_version_is_confirmed(stubbed) -> None:
    deployer, stub, _ = stubbed
    expect_endpoint(stub, "v7", "Updating", pending="v6")

    serving = deployer.serving("docllm-dev-tiny")

    assert serving is not None and serving.version is None and not serving.settled
    assert serving.versions == ("v7",) and serving.updating_to == names("v6").endpoint_config


def test_no_endpoint_serves_nothing(stubbed) -> None:
    deployer, stub, _ = stubbed
    not_found(stub, "describe_endpoint")
    assert deployer.serving_version("docllm-dev-tiny") is None


def test_rolling_back_on_sagemaker_updates_to_the_good_config_then_sees_it_serve(stubbed) -> None:
    """The rollback's calls in order: the deployer's UpdateEndpoint to the good version's existing
    Model and EndpointConfig, then DescribeEndpoint until the traffic has shifted."""
    deployer, stub, captured = stubbed
    good, bad = spec(model_version="v6", alarm_names=[]), names("v7")
    expected = build_sagemaker_requests(good, stage="dev", update=True)
    stub.add_response("describe_endpoint", endpoint_description(bad.endpoint_config), {"EndpointName": bad.endpoint})
    # The good version served before: its Model and EndpointConfig exist, nothing is created.
    stub.add_response(
        "describe_model",
        {"ModelName": names("v6").model, "ModelArn": arn("model", names("v6").model), "CreationTime": T},
        {"ModelName": names("v6").model},
    )
    stub.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": names("v6").endpoint_config,
            "EndpointConfigArn": arn("endpoint-config", names("v6").endpoint_config),
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": names("v6").model}],
            "CreationTime": T,
        },
        {"EndpointConfigName": names("v6").endpoint_config},
    )
    stub.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": bad.endpoint_config,
            "EndpointConfigArn": arn("endpoint-config", bad.endpoint_config),
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": bad.model}],
            "CreationTime": T,
        },
        {"EndpointConfigName": bad.endpoint_config},
    )
    stub.add_response(
        "list_tags",
        {"Tags": [{"Key": "docllm:model-version", "Value": "v7"}]},
        {"ResourceArn": arn("endpoint-config", bad.endpoint_config)},
    )
    stub.add_response("update_endpoint", {"EndpointArn": arn("endpoint", bad.endpoint)}, expected.endpoint)
    expect_endpoint(stub, "v7", "Updating", pending="v6")
    expect_endpoint(stub, "v6")

    record = deployer.deploy(good, stage="dev")
    during = deployer.serving_version("docllm-dev-tiny")
    after = deployer.serving_version("docllm-dev-tiny")

    assert record.previous_version == "v7" and record.details["action"] == "update"
    assert (during, after) == (None, "v6")
    assert captured.operations().count("UpdateEndpoint") == 1
    assert captured.params("UpdateEndpoint")["EndpointConfigName"] == names("v6").endpoint_config


# -- the rollback's verify step on SageMaker --------------------------------------------------------


def incident() -> Incident:
    return Incident(
        incident_id="inc1",
        target="sagemaker",
        family="tiny",
        bad_version="v7",
        restored_version="v6",
        action="redeploy",
        severity="warning",
        alarm_name="docllm-dev-serving-5xx-rate",
        opened_at="2025-01-01T00:00:00+00:00",
        summary="5xx on v7",
    )


@pytest.fixture
def platform(tmp_path: Path, stubbed, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    deployer, stub, _ = stubbed
    p = local_platform(tmp_path / "data")
    cloud = CloudDeployer(p.settings)
    cloud._sagemaker = deployer
    vars(p)["cloud_deployer"] = cloud
    p.state.put(rollback.INCIDENTS_PK, "inc1", incident().model_dump(mode="json", exclude={"status"}))
    monkeypatch.setattr(rollback, "_sleep", lambda s: None)
    return p, stub


def test_verification_waits_for_the_traffic_shift_and_records_what_serves(platform) -> None:
    p, stub = platform
    expect_endpoint(stub, "v7", "Updating", pending="v6")
    expect_endpoint(stub, "v6")

    rollback._verify(p, incident())

    done = rollback.load_incident(p, "inc1")
    assert done is not None and done.steps_done == ["verify"]
    assert done.verification is not None and done.verification["observed"] == "v6"
    assert done.verification["config"] == names("v6").endpoint_config and done.verification["attempts"] == 2


def test_an_endpoint_that_settles_on_the_bad_version_fails_verification_and_pages(platform) -> None:
    p, stub = platform
    # SageMaker's own auto-rollback took the update back: InService on the bad config.
    expect_endpoint(stub, "v7", "InService")

    with pytest.raises(rollback.VerificationFailedError):
        rollback._verify(p, incident())

    after = rollback.load_incident(p, "inc1")
    assert after is not None and after.steps_done == [] and after.severity == "page"
    (page,) = p.notifier.read()  # type: ignore[attr-defined]
    assert page["severity"] == "page" and "did not take effect" in page["subject"]


def test_an_update_still_going_when_the_time_is_up_is_retried(platform, monkeypatch: pytest.MonkeyPatch) -> None:
    p, stub = platform
    monkeypatch.setattr(rollback, "CLOUD_VERIFY_S", 0.0)
    expect_endpoint(stub, "v7", "Updating", pending="v6")

    with pytest.raises(rollback.VerificationPendingError):
        rollback._verify(p, incident())

    after = rollback.load_incident(p, "inc1")
    assert after is not None and after.steps_done == [] and after.timeline[-1].kind == "verification-pending"


@pytest.mark.parametrize(("guardrails", "expected"), [(True, ["docllm-dev-serving-5xx-rate"]), (False, [])])
def test_a_rollback_update_carries_no_auto_rollback_alarms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guardrails: bool, expected: list[str]
) -> None:
    """The alarms a blue/green update rolls back on are the ones in ALARM about the bad version: on the
    update that restores the good version they would make SageMaker undo the rollback."""
    p = local_platform(tmp_path / "data")
    settings = p.settings.model_copy(update={"endpoint_alarms": ["docllm-dev-serving-5xx-rate"]})
    seen: list[Any] = []

    def fake_deploy(self: SageMakerDeployer, spec: Any, *, stage: str) -> Any:
        seen.append(spec)
        raise RuntimeError("captured")

    monkeypatch.setattr(SageMakerDeployer, "deploy", fake_deploy)
    model = {"family": "tiny", "export_uri": "s3://artifacts/models/v6/hf/"}
    with pytest.raises(RuntimeError, match="captured"):
        CloudDeployer(settings).deploy("sagemaker", model_version="v6", model=model, guardrails=guardrails)
    assert seen[0].alarm_names == expected
