"""Registry domain: group names SageMaker accepts, specs both registries accept, metadata round trip."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from docllm.registry.metadata import (
    client_token,
    customer_metadata,
    metadata_properties,
    metrics_from,
    model_metrics,
    spec_fields_from,
)
from docllm.registry.models import PackageSpec, clean_description, group_name

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@pytest.mark.parametrize(
    ("stage", "family", "expected"),
    [
        ("dev", "tiny-s3", "docllm-dev-tiny-s3"),
        ("Prod", "unified-1.3b", "docllm-prod-unified-1-3b"),
        ("dev", "a..b", "docllm-dev-a-b"),
    ],
)
def test_group_name_is_valid_for_sagemaker(stage: str, family: str, expected: str) -> None:
    assert group_name(stage, family) == expected
    assert SAGEMAKER_NAME.match(expected)


def test_a_long_group_name_is_cut_with_a_hash_that_keeps_names_apart() -> None:
    a = group_name("staging-eu-west-1-team", "a-very-long-family-name-number-1")
    b = group_name("staging-eu-west-1-team", "a-very-long-family-name-number-2")
    assert a != b and len(a) <= 63 and len(b) <= 63
    assert SAGEMAKER_NAME.match(a) and SAGEMAKER_NAME.match(b)
    assert group_name("staging-eu-west-1-team", "a-very-long-family-name-number-1") == a


def test_descriptions_are_stored_on_one_line() -> None:
    assert clean_description("a\nb\t c\x00d") == "a b c d"
    assert len(clean_description("x" * 5000)) == 1024


def _spec(**changes: object) -> PackageSpec:
    fields: dict[str, object] = {
        "model_version": "tiny-s3-20260101",
        "family": "tiny-s3",
        "export_uri": "s3://a/models/tiny-s3/v/hf/",
        "report_uri": "s3://a/evaluations/e/report.json",
        "report_sha256": "0" * 64,
        "evaluation_id": "e",
        "metrics": {"heldout_loss": 0.1, "tiny": 1e-05, "big": 12345678901234.5},
        "commit": "abc",
        "training_job": "train-1",
    }
    return PackageSpec.model_validate({**fields, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {"model_version": "has;semicolon"},
        {"model_version": ""},
        {"export_uri": "s3://" + "x" * 300},
        {"report_sha256": "ABC"},
        {"metrics": {"bad name": 1.0}},
        {"metrics": {f"m{i}": 1.0 for i in range(41)}},
    ],
)
def test_a_spec_sagemaker_would_refuse_is_refused_here(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _spec(**changes)


def test_metadata_round_trips_every_field_and_exact_floats() -> None:
    s = _spec()
    customer = customer_metadata(s, stage="dev")
    fields = spec_fields_from(customer, metadata_properties(s), model_metrics(s))
    assert fields["metrics"] == s.metrics
    for name in ("model_version", "family", "export_uri", "evaluation_id", "report_uri", "report_sha256", "commit"):
        assert fields[name] == getattr(s, name)
    assert fields["training_job"] == "train-1"
    assert "docllm:dataset_version" not in customer  # empty values are left out
    assert metrics_from({"docllm:metric:x": "nope", "other": "1"}) == {}


def test_client_token_is_fixed_by_stage_and_version_and_fits_sagemaker() -> None:
    token = client_token("dev", "m1")
    assert token == client_token("dev", "m1") != client_token("dev", "m2")
    assert re.fullmatch(r"[a-zA-Z0-9-]{1,36}", token)
