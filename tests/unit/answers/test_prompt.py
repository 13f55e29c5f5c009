"""The prompt holds the most relevant passages that fit the model's context, then the question."""

from __future__ import annotations

from pathlib import Path

from docllm.answers.prompt import (
    ANSWER_MARKER,
    CONTEXT_MARKER,
    budget_for,
    build_prompt,
    estimate_tokens,
    render_prompt,
)
from docllm.answers.retrieve import retrieve
from tests.unit.answers.fakes import small_index

QUESTION = "How do I enable versioning on a bucket?"


def test_the_prompt_ends_with_the_question_and_the_answer_cue(tmp_path: Path) -> None:
    built = build_prompt(retrieve(small_index(tmp_path), QUESTION), QUESTION, budget_tokens=1000)
    assert built.prompt.endswith(f"### Question:\n{QUESTION}\n\n{ANSWER_MARKER}\n")
    assert built.prompt.startswith(f"{CONTEXT_MARKER}\n[1] Using versioning in S3 buckets > Enabling versioning\n")


def test_passages_come_most_relevant_first_and_whole_when_they_fit(tmp_path: Path) -> None:
    built = build_prompt(retrieve(small_index(tmp_path), QUESTION), QUESTION, budget_tokens=1000)
    assert built.passages[0].chunk.chunk_id == "s3/Versioning.md#0"
    assert not built.passages[0].cut
    assert built.estimated_tokens <= built.budget_tokens


def test_a_small_budget_keeps_the_sentence_that_answers(tmp_path: Path) -> None:
    built = build_prompt(retrieve(small_index(tmp_path), QUESTION), QUESTION, budget_tokens=80)
    assert len(built.passages) == 1 and built.passages[0].cut
    assert "To enable versioning on a bucket" in built.passages[0].text
    assert built.estimated_tokens <= 80


def test_no_passage_fits_a_budget_smaller_than_the_question(tmp_path: Path) -> None:
    built = build_prompt(retrieve(small_index(tmp_path), QUESTION), QUESTION, budget_tokens=10)
    assert built.passages == []


def test_the_budget_leaves_room_for_the_answer() -> None:
    assert budget_for(256, 64) == 256 - 64 - 8
    assert budget_for(256, 64, share=0.5) == (256 - 64 - 8) // 2
    assert budget_for(64, 64) == 0


def test_the_estimate_is_conservative_for_identifier_heavy_text() -> None:
    # 2.5 bytes per token: more tokens than the tiny tokenizer's average of 3.4.
    text = "arn:aws:s3:::amzn-s3-demo-bucket/* s3:PutObject --sse-kms-key-id"
    assert estimate_tokens(text) >= len(text.encode()) / 3.4


def test_render_prompt_collapses_whitespace_in_the_question() -> None:
    assert render_prompt([], "how\tdo  I").endswith("### Question:\nhow do I\n\n### Answer:\n")


def test_a_deep_heading_path_keeps_its_most_specific_parts() -> None:
    from docllm.answers.prompt import MAX_HEADING_CHARS, heading_of
    from docllm.answers.retrieve import RetrievedChunk

    path = ["Amazon S3 User Guide", "Using server-side encryption " * 3, "Specifying SSE-C", "Multipart uploads"]
    chunk = RetrievedChunk(
        chunk_id="c", doc_key="d", version_id=None, service="s3", title=path[1], heading_path=path, text="", score=1
    )
    heading = heading_of(chunk)
    assert heading == "Specifying SSE-C > Multipart uploads" and len(heading) <= MAX_HEADING_CHARS
