"""``docllm ask QUESTION --stream``: the model's text as it comes, then the checked answer with its
citations; with ``--json`` only the final answer object (issue 15's CLI, streamed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docllm.cli import serve_cmds
from docllm.cli.common import EXIT_FAILED
from docllm.cli.main import main
from docllm.ports.inference import GenerationParams
from docllm.serving.exceptions import EngineUnavailableError
from tests.unit.answers.fakes import FakeEngine
from tests.unit.api.fakes import GOOD, QUESTION, isolate_ask, serving


class Words(FakeEngine):
    """Streams its reply a word at a time."""

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        text = self._text(prompt, params)
        first, *rest = text.split(" ")
        yield first
        for word in rest:
            yield " " + word


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_ask(monkeypatch)


def run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: Any, *argv: str
) -> tuple[int, str, str]:
    with serving(monkeypatch, tmp_path, engine) as (server, platform):
        info = {"api_url": f"http://127.0.0.1:{server.server_address[1]}", "auth": False}
        monkeypatch.setattr(serve_cmds, "running_platform", lambda _args: (platform, info))
        capsys.readouterr()
        code = main(["--data-dir", str(tmp_path), "ask", QUESTION, "--stream", *argv])
        captured = capsys.readouterr()
    # The API handler runs in this process: its log records may land on the same stdout.
    out = "".join(ln for ln in captured.out.splitlines(keepends=True) if not ln.startswith('{"level":'))
    return code, out, captured.err


def test_the_draft_is_printed_as_it_comes_then_the_answer_with_citations(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(monkeypatch, tmp_path, capsys, Words(GOOD))
    assert code == 0
    draft, _, final = out.partition("\n\n")
    assert draft == GOOD  # every delta, in order
    assert final.startswith(GOOD) and "[1] s3/Versioning.md" in final and "tiny-s3-v1" in final


def test_an_answer_that_abstains_after_its_draft_says_so_last(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(monkeypatch, tmp_path, capsys, Words("Objects can be up to 7 TB."))
    assert code == 0
    draft, _, final = out.partition("\n\n")
    assert draft == "Objects can be up to 7 TB."
    assert final.startswith("The documentation does not cover this.") and "(unsupported_claims)" in final


def test_with_json_only_the_final_answer_is_printed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(monkeypatch, tmp_path, capsys, Words(GOOD), "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["answer"] == GOOD and answer["citations"][0]["doc_key"] == "s3/Versioning.md"


def test_a_stream_the_engine_breaks_fails_the_verb(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Breaks(FakeEngine):
        def stream(self, prompt: str, params: GenerationParams) -> Iterator[str]:
            self._text(prompt, params)
            yield "Open the"
            raise EngineUnavailableError("broke")

    code, out, err = run(monkeypatch, tmp_path, capsys, Breaks(GOOD), "--json")
    assert code == EXIT_FAILED
    assert "503" in err and "error" in json.loads(out)
