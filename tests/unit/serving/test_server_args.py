"""The engine server's command line: the dtype comes from the flag, else ``$DOCLLM_ENGINE_DTYPE``."""

from __future__ import annotations

import pytest

from docllm.serving.server import ENV_DTYPE, parse_args

BASE = ["--export", "/nowhere", "--model-name", "v1"]


def test_dtype_defaults_to_float32_then_the_environment_then_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DTYPE, raising=False)
    assert parse_args(BASE).dtype == "float32"
    monkeypatch.setenv(ENV_DTYPE, "bfloat16")
    assert parse_args(BASE).dtype == "bfloat16"
    assert parse_args([*BASE, "--dtype", "float32"]).dtype == "float32"


def test_an_unknown_dtype_in_the_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_DTYPE, "float16")
    with pytest.raises(SystemExit) as exit_:
        parse_args(BASE)
    assert exit_.value.code == 2 and ENV_DTYPE in capsys.readouterr().err
