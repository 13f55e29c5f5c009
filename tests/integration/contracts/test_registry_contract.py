"""ModelRegistry contract: the SQLite registry behaves as SageMaker Model Registry does (over moto).

What moto lacks or gets wrong is covered by tests/integration/aws/test_sagemaker_registry.py
(botocore's service model checks every request the adapter sends).
"""

from __future__ import annotations

import pytest

from docllm.exceptions import NotFoundError
from docllm.ports.registry import ModelRegistry
from docllm.registry.models import NotApprovedError, PackageSpec, RegistryError


def spec(version: str, family: str = "tiny-s3", **changes: object) -> PackageSpec:
    fields: dict[str, object] = {
        "model_version": version,
        "family": family,
        "export_uri": f"s3://artifacts/models/{family}/{version}/hf/",
        "report_uri": f"s3://artifacts/evaluations/eval-{version}/report.json",
        "report_sha256": "ab" * 32,
        "metrics": {"heldout_loss": 3.25, "qa_token_f1": 0.21, "benchmark.cli.v2.acc_norm": 0.5},
        "dataset_version": "ds-20260101",
        "tokenizer_version": "tok-1",
        "training_job": f"train-{version}",
        "evaluation_id": f"eval-{version}",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "repository": "https://git.example.com/team/docllm",
        "description": "tiny model\nsecond line",
    }
    return PackageSpec.model_validate({**fields, **changes})


def test_register_creates_a_pending_package_with_its_metadata(registry: ModelRegistry) -> None:
    s = spec("m1")
    package = registry.register(s)
    assert package.status == "PendingManualApproval"
    assert package.approval_description is None
    assert package.package_version == 1
    assert package.group == "docllm-test-tiny-s3"
    assert package.package_arn.endswith(":model-package/docllm-test-tiny-s3/1")
    assert package.metrics == s.metrics
    assert package.description == "tiny model second line"
    for field in (
        "model_version",
        "family",
        "export_uri",
        "report_uri",
        "report_sha256",
        "dataset_version",
        "tokenizer_version",
        "training_job",
        "evaluation_id",
        "commit",
        "repository",
    ):
        assert getattr(package, field) == getattr(s, field), field
    assert registry.get("m1") == package


def test_optional_lineage_may_be_absent(registry: ModelRegistry) -> None:
    s = spec(
        "m1",
        dataset_version=None,
        tokenizer_version=None,
        training_job=None,
        commit=None,
        repository=None,
        description="",
        metrics={},
    )
    package = registry.register(s)
    assert (package.dataset_version, package.commit, package.repository, package.metrics) == (None, None, None, {})
    assert package.description == ""


def test_register_is_idempotent_by_model_version(registry: ModelRegistry) -> None:
    first = registry.register(spec("m1"))
    again = registry.register(spec("m1", metrics={"heldout_loss": 9.0}))
    assert again == first
    assert [p.model_version for p in registry.list()] == ["m1"]


def test_versions_count_up_within_a_family_and_start_again_in_another(registry: ModelRegistry) -> None:
    assert registry.register(spec("a1")).package_version == 1
    assert registry.register(spec("a2")).package_version == 2
    other = registry.register(spec("b1", family="smoke"))
    assert (other.package_version, other.group) == (1, "docllm-test-smoke")


def test_list_is_oldest_first_and_filters_by_family(registry: ModelRegistry) -> None:
    for version, family in [("a1", "tiny-s3"), ("b1", "smoke"), ("a2", "tiny-s3"), ("b2", "smoke")]:
        registry.register(spec(version, family=family))
    assert [p.model_version for p in registry.list()] == ["a1", "b1", "a2", "b2"]
    assert [p.model_version for p in registry.list("tiny-s3")] == ["a1", "a2"]
    assert [p.model_version for p in registry.list("smoke")] == ["b1", "b2"]
    assert registry.list("unknown-family") == []


def test_get_of_an_unknown_version_raises_not_found(registry: ModelRegistry) -> None:
    with pytest.raises(NotFoundError):
        registry.get("nobody")
    registry.register(spec("m1"))
    with pytest.raises(NotFoundError):
        registry.get("m2")


def test_set_status_moves_between_the_three_statuses(registry: ModelRegistry) -> None:
    registry.register(spec("m1"))
    approved = registry.set_status("m1", "Approved", "gate: every rule passed")
    assert (approved.status, approved.approval_description) == ("Approved", "gate: every rule passed")
    assert registry.get("m1").status == "Approved"
    rejected = registry.set_status("m1", "Rejected", "alice: leaks a secret\nin answers")
    assert (rejected.status, rejected.approval_description) == ("Rejected", "alice: leaks a secret in answers")
    assert registry.set_status("m1", "PendingManualApproval", "back to review").status == "PendingManualApproval"
    assert registry.get("m1").metrics == spec("m1").metrics  # metadata survives updates


def test_set_status_again_is_a_no_op(registry: ModelRegistry) -> None:
    registry.register(spec("m1"))
    first = registry.set_status("m1", "Approved", "gate: ok")
    again = registry.set_status("m1", "Approved", "gate: ok")
    assert again == first


def test_set_status_refuses_unknown_versions_statuses_and_empty_reasons(registry: ModelRegistry) -> None:
    with pytest.raises(NotFoundError):
        registry.set_status("nobody", "Approved", "why")
    registry.register(spec("m1"))
    with pytest.raises(RegistryError):
        registry.set_status("m1", "Deployed", "why")  # type: ignore[arg-type]
    with pytest.raises(RegistryError):
        registry.set_status("m1", "Approved", " \n ")
    assert registry.get("m1").status == "PendingManualApproval"


def test_champion_is_refused_unless_approved(registry: ModelRegistry) -> None:
    registry.register(spec("m1"))
    with pytest.raises(NotApprovedError):
        registry.set_alias("tiny-s3", "champion", "m1")
    registry.set_status("m1", "Rejected", "gate: worse")
    with pytest.raises(NotApprovedError):
        registry.set_alias("tiny-s3", "champion", "m1")
    with pytest.raises(NotApprovedError):
        registry.promote("tiny-s3", "m1")
    assert registry.aliases("tiny-s3") == {}
    registry.set_status("m1", "Approved", "alice: override")
    registry.set_alias("tiny-s3", "champion", "m1")
    assert registry.aliases("tiny-s3") == {"champion": "m1"}


def test_alias_of_an_unknown_version_or_another_family_is_refused(registry: ModelRegistry) -> None:
    with pytest.raises(NotFoundError):
        registry.set_alias("tiny-s3", "champion", "nobody")
    registry.register(spec("s1", family="smoke"))
    registry.set_status("s1", "Approved", "ok")
    with pytest.raises(RegistryError):
        registry.set_alias("tiny-s3", "champion", "s1")
    with pytest.raises(RegistryError):
        registry.set_alias("smoke", "latest", "s1")


def test_aliases_round_trip_and_removal(registry: ModelRegistry) -> None:
    for v in ("m1", "m2"):
        registry.register(spec(v))
        registry.set_status(v, "Approved", "ok")
    registry.set_alias("tiny-s3", "champion", "m1")
    registry.set_alias("tiny-s3", "champion", "m2")
    registry.set_alias("tiny-s3", "previous_champion", "m1")
    assert registry.aliases("tiny-s3") == {"champion": "m2", "previous_champion": "m1"}
    assert registry.aliases("smoke") == {}
    registry.set_alias("tiny-s3", "previous_champion", None)
    registry.set_alias("tiny-s3", "previous_champion", None)
    assert registry.aliases("tiny-s3") == {"champion": "m2"}
    champion = registry.champion("tiny-s3")
    assert champion is not None and champion.model_version == "m2"
    assert registry.champion("smoke") is None


def test_promote_keeps_the_replaced_champion_as_previous_and_is_idempotent(registry: ModelRegistry) -> None:
    for v in ("m1", "m2"):
        registry.register(spec(v))
        registry.set_status(v, "Approved", "ok")
    assert registry.promote("tiny-s3", "m1") == {"champion": "m1"}
    assert registry.promote("tiny-s3", "m2") == {"champion": "m2", "previous_champion": "m1"}
    assert registry.promote("tiny-s3", "m2") == {"champion": "m2", "previous_champion": "m1"}


def test_a_champion_rejected_since_does_not_become_previous(registry: ModelRegistry) -> None:
    for v in ("m1", "m2", "m3"):
        registry.register(spec(v))
        registry.set_status(v, "Approved", "ok")
    registry.promote("tiny-s3", "m1")
    registry.promote("tiny-s3", "m2")
    registry.set_status("m2", "Rejected", "alice: revoked")
    assert registry.promote("tiny-s3", "m3") == {"champion": "m3", "previous_champion": "m1"}


def test_get_by_arn_finds_the_package_an_event_names(registry: ModelRegistry) -> None:
    registry.register(spec("m1"))
    approved = registry.set_status("m1", "Approved", "gate: ok")
    assert registry.get_by_arn(approved.package_arn) == approved == registry.get("m1")
    other = approved.package_arn.rsplit("/", 1)[0] + "/99"
    with pytest.raises(NotFoundError):
        registry.get_by_arn(other)
    with pytest.raises(NotFoundError):
        registry.get_by_arn(approved.package_arn.replace("docllm-test-tiny-s3", "docllm-test-smoke"))


def test_the_family_given_to_get_is_only_a_hint(registry: ModelRegistry) -> None:
    registry.register(spec("a1"))
    smoke = registry.register(spec("b1", family="smoke"))
    assert registry.get("b1", family="smoke") == smoke
    assert registry.get("b1", family="tiny-s3") == smoke  # a wrong hint: found all the same
    assert registry.get("b1", family="no-such-family") == smoke
    with pytest.raises(NotFoundError):
        registry.get("nobody", family="smoke")
