"""``docllm ask`` when the answer abstains although retrieval found relevant pages: it names them,
apart from citations, so the reader knows where to look (held-out questions mostly end this way)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.cli import serve_cmds
from docllm.cli.main import main
from tests.unit.answers.fakes import FakeEngine
from tests.unit.api.fakes import GOOD, isolate_ask, serving


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_ask(monkeypatch)


def ask(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], question: str) -> str:
    with serving(monkeypatch, tmp_path, FakeEngine(GOOD)) as (server, platform):
        info = {"api_url": f"http://127.0.0.1:{server.server_address[1]}", "auth": False}
        monkeypatch.setattr(serve_cmds, "running_platform", lambda _args: (platform, info))
        capsys.readouterr()
        assert main(["--data-dir", str(tmp_path), "ask", question]) == 0
        captured = capsys.readouterr()
    # The API handler runs in this process: its log records may land on the same stdout.
    return "".join(ln for ln in captured.out.splitlines(keepends=True) if not ln.startswith('{"level":'))


def test_an_abstention_over_relevant_pages_names_them_as_search_results(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The versioning page covers "s3 version work" but no line of it says how it works (test_service).
    out = ask(monkeypatch, tmp_path, capsys, "How does S3 versioning work?")
    assert out.startswith("The documentation does not cover this.") and "(no_answer_in_context)" in out
    assert "Pages that may cover it (search results, not citations):" in out
    assert "s3/Versioning.md" in out and "[1]" not in out


def test_an_abstention_with_nothing_relevant_points_nowhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ask(monkeypatch, tmp_path, capsys, "How do I bake sourdough bread at home?")
    assert "(no_relevant_documents)" in out and "Pages that may cover it" not in out
