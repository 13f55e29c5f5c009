"""The demo's corpus handling and its record of finished steps (no platform needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.dataset.versions import assign_split
from docllm.demo.corpus import CorpusError, discover, questions, sample_corpus, split_waves, stage
from docllm.demo.state import DemoState


def _corpus(root: Path, pages: dict[str, str]) -> Path:
    for rel, text in pages.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_services_are_the_sub_folders_and_only_documents_count(tmp_path: Path) -> None:
    root = _corpus(
        tmp_path,
        {
            "alpha/a.md": "# A",
            "alpha/guide/b.html": "<h1>B</h1>",
            "alpha/notes.txt": "not a document",
            "alpha/.hidden.md": "# hidden",
            "beta/c.md": "# C",
            "questions.txt": "What?",
        },
    )
    assert [p.key for p in discover(root)] == ["alpha/a.md", "alpha/guide/b.html", "beta/c.md"]


def test_a_folder_without_documents_or_with_a_bad_service_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no documents"):
        discover(_corpus(tmp_path / "empty", {"alpha/x.txt": "x"}))
    with pytest.raises(CorpusError, match="lowercase"):
        discover(_corpus(tmp_path / "bad", {"Alpha/a.md": "# A"}))


def test_every_fourth_training_page_waits_and_held_out_pages_come_first(tmp_path: Path) -> None:
    root = _corpus(tmp_path, {f"svc/page-{i:02d}.md": f"# Page {i}" for i in range(40)})
    pages = discover(root)
    first, later = split_waves(pages)
    assert sorted(p.key for p in first + later) == sorted(p.key for p in pages)
    train = [p for p in pages if assign_split(p.key) == "train"]
    assert [p.key for p in later] == [p.key for p in train[3::4]]
    assert all(assign_split(p.key) == "train" for p in later)


def test_the_sample_corpus_holds_its_evaluation_pages_in_the_first_upload() -> None:
    pages = discover(sample_corpus())
    first, later = split_waves(pages)
    assert len(pages) >= 24 and len({p.service for p in pages}) == 3
    assert later and {"test", "validation"} <= {assign_split(p.key) for p in first}
    asked = questions(sample_corpus(), first, 5)
    assert len(asked) == 5 and all(q.endswith("?") for q in asked)


def test_staging_keeps_the_keys_and_copying_again_changes_nothing(tmp_path: Path) -> None:
    pages = discover(_corpus(tmp_path / "corpus", {"svc/dir/a.md": "# A", "svc/b.md": "# B"}))
    folders = stage(pages, tmp_path / "staged")
    assert folders == {"svc": tmp_path / "staged" / "svc"}
    copied = tmp_path / "staged" / "svc" / "dir" / "a.md"
    before = copied.stat().st_mtime_ns
    stage(pages, tmp_path / "staged")
    assert copied.read_text() == "# A" and copied.stat().st_mtime_ns == before


def test_questions_come_from_headings_when_the_corpus_lists_none(tmp_path: Path) -> None:
    root = _corpus(tmp_path, {"svc/a.md": "# A\n\n## Creating a vault\n\ntext", "svc/b.md": "# B\n\nno section"})
    assert questions(root, discover(root), 3) == ["What does the documentation say about Creating a vault?"]


def test_the_state_keeps_a_started_request_and_a_finished_step_across_runs(tmp_path: Path) -> None:
    state = DemoState(tmp_path, corpus="c", quick=True)
    state.begin("train", request_id="r-1")
    again = DemoState(tmp_path, corpus="ignored", quick=False)
    assert (again.corpus, again.quick) == ("c", True)  # the recorded run's, not the new arguments
    assert again.step("train") == {"request_id": "r-1", "status": "started"} and not again.done("train")
    again.finish("train", seconds=1.25, summary="trained", result={"model_version": "v1"})
    last = DemoState(tmp_path, corpus="c", quick=True)
    assert last.done("train") and last.step("train")["request_id"] == "r-1"
    assert last.step("train")["result"] == {"model_version": "v1"}
