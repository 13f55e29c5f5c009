from __future__ import annotations

import pytest

from docllm.serving.chat import (
    ANSWER_MARKER,
    STOP,
    ChatMessage,
    render_answer_prompt,
    render_chat,
)


def test_a_conversation_renders_as_marked_blocks_ending_with_an_open_answer() -> None:
    prompt = render_chat(
        [
            ChatMessage(role="system", content="Answer from the docs."),
            ChatMessage(role="user", content="What is S3?"),
            ChatMessage(role="assistant", content="An object store."),
            ChatMessage(role="user", content=" And versioning? \n"),
        ]
    )
    assert prompt == (
        "### System:\nAnswer from the docs.\n\n"
        "### Question:\nWhat is S3?\n\n"
        "### Answer:\nAn object store.\n\n"
        "### Question:\nAnd versioning?\n\n"
        "### Answer:\n"
    )


def test_the_stop_string_is_the_start_of_the_next_block() -> None:
    answer = "Versioning keeps every version."
    continuation = answer + "\n\n### Question:\nmore"
    assert continuation[: continuation.find(STOP[0])].strip() == answer
    assert ANSWER_MARKER.startswith(STOP[0].strip())


def test_the_answer_prompt_puts_context_before_the_question() -> None:
    prompt = render_answer_prompt("[1] Buckets hold objects.\n", "What do buckets hold?")
    assert prompt == "### Context:\n[1] Buckets hold objects.\n\n### Question:\nWhat do buckets hold?\n\n### Answer:\n"


def test_an_empty_conversation_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one message"):
        render_chat([])
