"""The local registry announces what SageMaker announces, and never loses an announcement."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from docllm.adapters.local.registry import LocalModelRegistry
from docllm.events.aws import ModelPackageStateChangeEvent
from docllm.events.envelope import BusEvent
from docllm.exceptions import TransientError
from docllm.ports.bus import EventBus
from docllm.registry.models import PackageSpec


class Bus(EventBus):
    """Records events; fails the next ``fail`` publishes, as a crash between commit and publish would."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[BusEvent] = []
        self.fail = fail

    def publish(self, events: Sequence[BusEvent]) -> None:
        if self.fail:
            self.fail -= 1
            raise TransientError("bus unavailable")
        self.events.extend(events)


def spec(version: str = "m1") -> PackageSpec:
    return PackageSpec(
        model_version=version,
        family="tiny-s3",
        export_uri=f"s3://artifacts/models/tiny-s3/{version}/hf/",
        report_uri=f"s3://artifacts/evaluations/eval-{version}/report.json",
        report_sha256="ab" * 32,
        metrics={"heldout_loss": 3.25},
        training_job=f"train-{version}",
        evaluation_id=f"eval-{version}",
        commit="abc123",
        repository="https://git.example.com/team/docllm",
    )


def registry(tmp_path: Path, bus: EventBus) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "registry.db", default_bus=bus, stage="dev")


def test_creation_and_each_status_change_are_announced_like_sagemaker(tmp_path: Path) -> None:
    bus = Bus()
    reg = registry(tmp_path, bus)
    package = reg.register(spec())
    reg.register(spec())
    reg.set_status("m1", "Approved", "gate: ok")
    reg.set_status("m1", "Approved", "gate: ok")
    reg.set_status("m1", "Approved", "alice: still ok")
    assert [e.detail["ModelApprovalStatus"] for e in bus.events] == ["PendingManualApproval", "Approved", "Approved"]
    for event in bus.events:
        parsed = ModelPackageStateChangeEvent.model_validate(event.to_wire())
        assert parsed.source == "aws.sagemaker"
        assert parsed.resources == [package.package_arn]
        d = parsed.detail
        assert (d.ModelPackageGroupName, d.ModelPackageVersion, d.ModelPackageArn) == (
            "docllm-dev-tiny-s3",
            1,
            package.package_arn,
        )
        assert d.ModelPackageStatus == "Completed"
        assert d.CustomerMetadataProperties["docllm:model_version"] == "m1"
        assert d.CustomerMetadataProperties["docllm:metric:heldout_loss"] == "3.25"
        assert d.MetadataProperties == {
            "CommitId": "abc123",
            "Repository": "https://git.example.com/team/docllm",
            "GeneratedBy": "train-m1",
        }
    assert "ApprovalDescription" not in bus.events[0].detail
    assert bus.events[2].detail["ApprovalDescription"] == "alice: still ok"
    assert reg.pending_announcements() == 0


def test_a_lost_announcement_is_made_when_the_caller_retries(tmp_path: Path) -> None:
    bus = Bus()
    reg = registry(tmp_path, bus)
    reg.register(spec())
    bus.fail = 1  # the status is committed, then the process "dies" before the event is out
    with pytest.raises(TransientError):
        reg.set_status("m1", "Approved", "gate: ok")
    assert reg.get("m1").status == "Approved"
    assert reg.pending_announcements() == 1
    # The gate's message is redelivered; it applies the same status again: nothing changes, but
    # the lost event goes out, with the id it was given when the change was written.
    reg.set_status("m1", "Approved", "gate: ok")
    assert [e.detail["ModelApprovalStatus"] for e in bus.events] == ["PendingManualApproval", "Approved"]
    reg.set_status("m1", "Approved", "gate: ok")
    assert len(bus.events) == 2


def test_a_lost_creation_announcement_is_made_by_the_next_register_or_a_sweep(tmp_path: Path) -> None:
    bus = Bus(fail=2)
    reg = registry(tmp_path, bus)
    with pytest.raises(TransientError):
        reg.register(spec("m1"))
    with pytest.raises(TransientError):
        reg.register(spec("m2"))
    reg.register(spec("m1"))
    assert [e.detail["ModelPackageVersion"] for e in bus.events] == [1]
    # A fresh registry on the same file (the runtime restarting) sweeps what is left.
    again = registry(tmp_path, bus)
    assert again.announce_pending() == 1
    assert [e.detail["ModelPackageVersion"] for e in bus.events] == [1, 2]
    assert again.announce_pending() == 0


def test_a_faulted_bus_publish_is_healed_by_the_retry(tmp_path: Path) -> None:
    from docllm.faults import FaultInjector, parse_faults

    bus = Bus()
    injector = FaultInjector(parse_faults("bus.publish:nth=2"))
    reg = registry(tmp_path, injector.wrap("bus", bus))
    reg.register(spec())
    with pytest.raises(TransientError):
        reg.set_status("m1", "Rejected", "gate: worse")
    reg.set_status("m1", "Rejected", "gate: worse")
    assert [e.detail["ModelApprovalStatus"] for e in bus.events] == ["PendingManualApproval", "Rejected"]


def _first_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        out.setdefault(key, value)  # the AWS sample repeats "source" (as a list, second time)
    return out


@pytest.mark.corpus
def test_the_event_has_the_fields_of_the_aws_sample(corpus_dir: Path, tmp_path: Path) -> None:
    page = (corpus_dir / "awsdocs/sagemaker/doc_source/automating-sagemaker-with-eventbridge.md").read_text()
    section = page.split('<a name="eventbridge-model-package"></a>', 1)[1]
    sample = json.loads(section.split("```", 2)[1], object_pairs_hook=_first_keys)
    assert ModelPackageStateChangeEvent.model_validate(sample).detail.ModelApprovalStatus == "Rejected"

    bus = Bus()
    registry(tmp_path, bus).register(spec())
    ours = bus.events[0].to_wire()
    assert set(ours) == set(sample)
    # Every field of AWS's detail but the inference and marketplace ones (a registry-only package).
    not_ours = {"InferenceSpecification", "ModelPackageStatusDetails", "CertifyForMarketplace"}
    assert set(sample["detail"]) - not_ours <= set(ours["detail"])
    assert ours["detail"]["CreationTime"].endswith("Z") and ours["time"].endswith("Z")


def test_local_packages_name_no_outside_modifier_and_are_found_by_the_arn_of_their_event(tmp_path: Path) -> None:
    bus = Bus()
    reg = registry(tmp_path, bus)
    reg.register(spec())
    changed = reg.set_status("m1", "Rejected", "alice: leaks")
    assert changed.last_modified_by is None  # only docllm changes a local package
    event = ModelPackageStateChangeEvent.model_validate(bus.events[-1].model_dump(mode="json", by_alias=True))
    assert reg.get_by_arn(event.detail.ModelPackageArn) == changed
