"""The chat format of our base models: plain-text turns under ``###`` markers.

Our models are pretrained on documentation, then answer-tuned on examples in this format;
they have no special chat tokens, so a conversation is rendered as text the tokenizer already
knows, one block per turn, blocks separated by a blank line, ending with an open answer::

    ### System:
    Answer from the AWS documentation.

    ### Question:
    How do I enable versioning on a bucket?

    ### Answer:
    <the model continues here>

Turns map to markers as follows: ``system`` (and OpenAI's newer ``developer``) → ``### System:``,
``user`` → ``### Question:``, ``assistant`` → ``### Answer:``. Generation stops at
:data:`STOP` (the model starting the next block, ``\\n###``). Message text is inserted as is; a
message that itself holds a line ``### Answer:`` can change how the model reads the
conversation, which for a base model is as much protection as a template can give.

The answers package (``POST /v1/ask``) and the answer-tuning data builder use the same markers,
so a model tuned on :data:`ANSWER_PROMPT` examples is asked in exactly the format it learnt:
retrieved passages under ``### Context:``, then the question, then the open answer.

Example
-------
>>> print(render_chat([ChatMessage(role="user", content="What is S3?")]), end="|")
### Question:
What is S3?
<BLANKLINE>
### Answer:
|
>>> render_answer_prompt("[1] S3 stores objects.", "What does S3 store?").startswith(CONTEXT_MARKER)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SYSTEM_MARKER = "### System:"
CONTEXT_MARKER = "### Context:"
QUESTION_MARKER = "### Question:"
ANSWER_MARKER = "### Answer:"
#: Between blocks: a blank line.
BLOCK_SEPARATOR = "\n\n"
#: Where a generated answer ends: the model opening another block.
STOP: tuple[str, ...] = ("\n###",)

#: The prompt of a grounded answer; ``context`` holds the retrieved passages, numbered ``[1]``, ``[2]``…
ANSWER_PROMPT = (
    f"{CONTEXT_MARKER}\n{{context}}{BLOCK_SEPARATOR}{QUESTION_MARKER}\n{{question}}{BLOCK_SEPARATOR}{ANSWER_MARKER}\n"
)

_MARKERS = {"system": SYSTEM_MARKER, "developer": SYSTEM_MARKER, "user": QUESTION_MARKER, "assistant": ANSWER_MARKER}


class ChatMessage(BaseModel):
    """One turn of a conversation (OpenAI's message, text content only)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str = Field(max_length=200_000)


def render_chat(messages: Sequence[ChatMessage]) -> str:
    """The prompt for ``messages``: each turn under its marker, then an open ``### Answer:``."""
    if not messages:
        raise ValueError("a chat needs at least one message")
    blocks = [f"{_MARKERS[m.role]}\n{m.content.strip()}" for m in messages]
    return BLOCK_SEPARATOR.join(blocks) + BLOCK_SEPARATOR + ANSWER_MARKER + "\n"


def render_answer_prompt(context: str, question: str) -> str:
    """The grounded-answer prompt (:data:`ANSWER_PROMPT`) for retrieved ``context`` and a ``question``."""
    return ANSWER_PROMPT.format(context=context.strip(), question=question.strip())
