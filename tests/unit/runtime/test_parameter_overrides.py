"""``DOCLLM_PARAMETER_OVERRIDES``: the local platform's ``sam deploy --parameter-overrides``."""

from __future__ import annotations

import pytest

from docllm.exceptions import ConfigurationError
from docllm.monitoring.definitions import read_alarms
from docllm.runtime.template import local_parameters
from tests.conftest import REPO


def test_overrides_are_read_and_the_deploy_target_stays_local() -> None:
    env = {"DOCLLM_PARAMETER_OVERRIDES": "AskLatencyP99AlarmMs=4000, DeployTarget=sagemaker"}
    assert local_parameters(env) == {"AskLatencyP99AlarmMs": "4000", "DeployTarget": "local"}
    assert local_parameters({}) == {"DeployTarget": "local"}


def test_a_malformed_override_is_refused_with_its_text() -> None:
    with pytest.raises(ConfigurationError, match="'AskLatencyP99AlarmMs' is not KEY=VALUE"):
        local_parameters({"DOCLLM_PARAMETER_OVERRIDES": "AskLatencyP99AlarmMs"})


def test_an_override_changes_the_threshold_the_local_platform_evaluates(monkeypatch: pytest.MonkeyPatch) -> None:
    def threshold() -> float:
        alarm = read_alarms(REPO / "template.yaml", parameters={"Stage": "dev"}).named("docllm-dev-serving-p99-latency")
        return alarm.threshold

    assert threshold() == 2500
    monkeypatch.setenv("DOCLLM_PARAMETER_OVERRIDES", "AskLatencyP99AlarmMs=4000")
    assert threshold() == 4000
