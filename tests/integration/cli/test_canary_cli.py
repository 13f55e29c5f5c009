"""``docllm deploy --canary/--bake`` and ``docllm endpoints`` showing a canary split."""

from __future__ import annotations

import pytest

from docllm.cli.main import build_parser, main
from docllm.runtime.local import LocalRuntime
from tests.integration.cli.conftest import Cli


def test_canary_flags_take_a_share_and_a_duration() -> None:
    args = build_parser().parse_args(["deploy", "m", "--canary", "10%", "--bake", "5m"])
    assert (args.canary, args.bake) == (10.0, 300.0)
    args = build_parser().parse_args(["deploy", "m", "--canary", "2.5", "--bake", "90"])
    assert (args.canary, args.bake) == (2.5, 90.0)
    args = build_parser().parse_args(["deploy", "m"])
    assert (args.canary, args.bake) == (None, None)


@pytest.mark.parametrize(
    "argv",
    [
        ["--canary", "0%"],
        ["--canary", "100"],
        ["--canary", "ten"],
        ["--bake", "0s"],
        ["--bake", "5 days"],
        ["--target", "sagemaker", "--canary", "10%"],
    ],
)
def test_a_bad_canary_request_is_a_usage_error(argv: list[str], tmp_path, capsys) -> None:
    assert main(["--data-dir", str(tmp_path), "deploy", "m", *argv]) == 2
    assert capsys.readouterr().err


def test_endpoints_shows_the_split_of_a_canary(rt: LocalRuntime, cli: Cli) -> None:
    assert rt.platform is not None
    rt.platform.state.put(
        "endpoints",
        "local",
        {
            "target": "local",
            "model_version": "tiny-s3-v1",
            "url": "http://127.0.0.1:41001",
            "endpoint": "http://127.0.0.1:41001",
            "finished_at": "2026-12-01T09:00:00.000+00:00",
            "previous_version": "tiny-s3-v0",
            "canary": {
                "model_version": "tiny-s3-v2",
                "url": "http://127.0.0.1:41002",
                "weight": 0.1,
                "started_at": "2026-12-01T09:10:00.000+00:00",
                "bake_until": "2026-12-01T09:15:00.000+00:00",
            },
        },
    )
    body = cli("endpoints", "--json").json()
    assert [(t["model_version"], t["role"], t["percent"]) for t in body["traffic"]] == [
        ("tiny-s3-v1", "stable", 90.0),
        ("tiny-s3-v2", "canary", 10.0),
    ]
    assert body["endpoints"][0]["canary"]["model_version"] == "tiny-s3-v2"
    shown = cli("endpoints").shown
    rows = [ln.split("\t") for ln in shown.splitlines()]
    assert rows[0] == ["target", "model", "role", "traffic", "endpoint", "since", "bake until", "replaced"]
    assert rows[1][:4] == ["local", "tiny-s3-v1", "stable", "90%"] and rows[1][-1] == "tiny-s3-v0"
    assert rows[2][:4] == ["local", "tiny-s3-v2", "canary", "10%"]
    assert rows[2][6] == "2026-12-01T09:15:00.000+00:00"
