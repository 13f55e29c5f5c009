"""``docllm families``: every family with its settings, the file's version; no platform needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docllm.cli.main import main


def test_families_lists_every_family_with_its_version_and_gate_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    families = tmp_path / "families.yaml"
    families.write_text(
        "version: 3\nfamilies:\n  only-s3:\n    preset: tiny\n    services: [s3]\n    paths: ['s3/*Bucket*']\n"
        "    budget: {tokens: 1000}\n    deploy: []\n"
    )
    monkeypatch.setenv("DOCLLM_FAMILIES_FILE", str(families))
    assert main(["--data-dir", str(tmp_path / "none"), "families", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["version"].startswith("3-") and data["source"] == str(families)
    (fam,) = data["families"]
    assert fam["name"] == "only-s3" and fam["paths"] == ["s3/*Bucket*"] and fam["deploy"] == []
    assert len(fam["config_sha256"]) == 64 and fam["gate_rules"]
    assert main(["--data-dir", str(tmp_path / "none"), "families"]) == 0
    text = capsys.readouterr().out
    assert "only-s3" in text and "paths s3/*Bucket*" in text and "never" in text


def test_pipeline_cancel_needs_a_known_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path), "pipeline", "cancel", "no-such-family"]) == 2
