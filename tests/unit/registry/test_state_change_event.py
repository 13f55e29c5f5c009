"""The "SageMaker Model Package State Change" model reads what AWS sends: AWS's published sample,
epoch-number times, no CustomerMetadataProperties."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from docllm.events.aws import ModelPackageStateChangeEvent, ModelPackageStateDetail
from tests.conftest import CORPUS

SAMPLE_DOC = CORPUS / "awsdocs/sagemaker/doc_source/automating-sagemaker-with-eventbridge.md"


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def aws_sample() -> dict[str, Any]:
    """The model package sample of AWS's EventBridge page. It repeats ``"source"`` (the second time
    as a list, which EventBridge never sends): the first one is the event's."""
    if not SAMPLE_DOC.is_file():
        pytest.skip(f"{SAMPLE_DOC} is not present")
    text = SAMPLE_DOC.read_text()
    section = text[text.index('<a name="eventbridge-model-package">') :]
    block = re.search(r"```\s*\n(\{.*?\})\s*\n```", section, re.DOTALL)
    assert block is not None
    event: dict[str, Any] = json.loads(block.group(1), object_pairs_hook=_first_wins)
    assert event["detail-type"] == "SageMaker Model Package State Change"
    return event


def test_aws_published_sample_parses() -> None:
    event = ModelPackageStateChangeEvent.model_validate(aws_sample())
    d = event.detail
    assert (d.ModelPackageGroupName, d.ModelPackageVersion, d.ModelApprovalStatus) == (
        "versionedmp-p-idy6c3e1fiqj",
        2,
        "Rejected",
    )
    assert (d.CreationTime, d.LastModifiedTime) == ("2021-02-24T17:00:14Z", "2021-02-24T17:00:14Z")
    assert d.CustomerMetadataProperties == {}  # the sample has none
    assert d.LastModifiedBy is None


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (1614186014000, "2021-02-24T17:00:14.000Z"),  # epoch milliseconds, as AWS's other samples
        (1592411992203.0, "2020-06-17T16:39:52.203Z"),
        ("1583831889050", "2020-03-10T09:18:09.050Z"),
        (1614186014, "2021-02-24T17:00:14.000Z"),  # epoch seconds
        ("2021-02-24T17:00:14Z", "2021-02-24T17:00:14Z"),
    ],
)
def test_times_are_kept_as_iso_strings_whatever_their_form(sent: object, kept: str) -> None:
    detail = {
        "ModelPackageGroupName": "g",
        "ModelPackageArn": "arn:aws:sagemaker:us-east-2:123456789012:model-package/g/1",
        "ModelApprovalStatus": "Approved",
        "CreationTime": sent,
        "LastModifiedTime": sent,
    }
    d = ModelPackageStateDetail.model_validate(detail)
    assert (d.CreationTime, d.LastModifiedTime) == (kept, kept)


def test_the_sample_with_numeric_times_parses() -> None:
    event = aws_sample()
    event["detail"]["CreationTime"] = 1614186014000
    event["detail"]["LastModifiedTime"] = 1614186014000.0
    d = ModelPackageStateChangeEvent.model_validate(event).detail
    assert d.CreationTime == d.LastModifiedTime == "2021-02-24T17:00:14.000Z"


@pytest.mark.parametrize("bad", [True, [1], {"t": 1}, 1e300])
def test_what_is_no_time_is_refused(bad: object) -> None:
    with pytest.raises(ValidationError):
        ModelPackageStateDetail.model_validate(
            {
                "ModelPackageGroupName": "g",
                "ModelPackageArn": "a",
                "ModelApprovalStatus": "Approved",
                "CreationTime": bad,
            }
        )
