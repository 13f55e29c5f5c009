"""`docllm eval retrieval --corpus DIR`: per-type recall and abstention against an index built from a folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docllm.cli.main import main

PAGES = {
    "s3/versioning.md": "# Using versioning\n\nVersioning keeps multiple variants of an object in the same bucket. "
    "To retrieve a specific version, you specify its version ID.\n",
    "s3/lifecycle.md": "# Lifecycle rules\n\nExpiration actions define when objects expire. Amazon S3 deletes "
    "expired objects on your behalf.\n",
    "lambda/layers.md": "# Layers\n\nA layer is a zip file archive that can contain additional code such as "
    "libraries shared between functions.\n",
}

QUESTIONS = [
    {"id": "1", "type": "howto", "question": "How do I retrieve a specific version of an object?",
     "expected_doc_keys": ["s3/versioning.md"]},
    {"id": "2", "type": "yesno", "question": "Can objects be deleted automatically when they expire?",
     "expected_doc_keys": ["s3/lifecycle.md"]},
    {"id": "3", "type": "howto", "question": "How do I share libraries between functions?",
     "expected_doc_keys": ["lambda/layers.md"]},
    {"id": "4", "type": "not_covered", "question": "How do I bake sourdough bread?", "expected_doc_keys": []},
]  # fmt: skip


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "corpus"
    for key, text in PAGES.items():
        service, name = key.split("/")
        (root / service / "doc_source").mkdir(parents=True, exist_ok=True)
        (root / service / "doc_source" / name).write_text(text, encoding="utf-8")
    questions = tmp_path / "set.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    return root, questions


def test_a_folder_index_gives_recall_per_type_and_abstention(tmp_path: Path, corpus, capsys):
    root, questions = corpus
    code = main(
        [
            "--data-dir",
            str(tmp_path / "d"),
            "eval",
            "retrieval",
            "--set",
            str(questions),
            "--corpus",
            str(root),
            "--json",
        ]
    )
    body = json.loads(capsys.readouterr().out)
    assert code == 0
    assert body["questions"] == 3 and body["not_covered_questions"] == 1
    assert body["recall_at_1"] == 1.0
    assert body["by_type"]["not_covered"]["abstain_rate"] == 1.0
    assert body["by_type"]["howto"]["abstain_rate"] == 0.0
    assert {d["id"] for d in body["details"]} == {"1", "2", "3", "4"}


def test_the_table_has_a_row_per_type_and_k_is_honoured(tmp_path: Path, corpus, capsys):
    root, questions = corpus
    assert (
        main(
            ["--data-dir", str(tmp_path / "d"), "eval", "retrieval", str(questions), "--corpus", str(root), "--k", "1"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "not_covered" in text and "yesno" in text and "k " in text


def test_no_question_file_is_a_usage_error(tmp_path: Path, corpus, capsys):
    root, _ = corpus
    assert main(["--data-dir", str(tmp_path / "d"), "eval", "retrieval", "--corpus", str(root)]) == 2
    assert (
        main(["--data-dir", str(tmp_path / "d"), "eval", "retrieval", "x.jsonl", "--corpus", str(tmp_path / "no")]) == 3
    )
