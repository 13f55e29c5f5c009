"""The answer path's request and response models (what ``POST /v1/ask`` and ``docllm ask`` exchange)."""

from __future__ import annotations

import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from docllm.answers.retrieve import MIN_COVERAGE

MAX_QUESTION_CHARS = 2000
NOT_COVERED = "The documentation does not cover this."
"""The answer of every abstention: a plain statement that claims nothing."""
PAGES_TO_READ = 3
"""Pages an abstention points to at most (:meth:`Answer.pages_to_read`)."""

AbstainReason = Literal[
    "no_relevant_documents",
    "context_too_small",
    "no_answer_in_context",
    "empty_answer",
    "unsupported_claims",
    "no_citations",
]
"""Why an answer abstained (docs/answers.md, "Abstention"):

``no_relevant_documents``
    retrieval found nothing above the relevance floor; nothing was generated;
``context_too_small``
    relevant passages were found but the model's context cannot hold even one of them beside the
    answer's tokens (a model with a short context); nothing was generated;
``no_answer_in_context``
    copy-constrained answering (the default, docs/answers.md): no line of the passages that fit is
    prose naming one of the question's terms, so there is nothing to copy; nothing was generated;
``empty_answer``
    the model generated nothing but whitespace;
``unsupported_claims``
    the draft holds factual tokens no retrieved chunk supports (grounding failed);
``no_citations``
    no sentence of the draft aligns with a retrieved chunk, so nothing could be cited.
"""


class AskRequest(BaseModel):
    """A question to answer from the documentation.

    Examples
    --------
    >>> AskRequest(question="  How do I enable versioning?  ").question
    'How do I enable versioning?'
    """

    model_config = ConfigDict(extra="forbid")

    question: str = Field(
        min_length=1, max_length=MAX_QUESTION_CHARS, description="1..2000 characters, no control characters"
    )
    k: int = Field(default=5, ge=1, le=20, description="how many documents to retrieve and cite at most")
    service: str | None = Field(default=None, max_length=128, description="only documents of this service")
    model: str | None = Field(
        default=None, max_length=256, description="the model version expected; 409 when another is deployed"
    )
    stream: bool = Field(
        default=False, description="server-sent events: delta events, then the answer (docs/answers.md, Streaming)"
    )

    @field_validator("question")
    @classmethod
    def _clean_question(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("question is empty")
        # Category C* covers control, format, surrogate and unassigned code points; newlines in a
        # question would also break the prompt's line structure.
        if any(unicodedata.category(ch).startswith("C") for ch in value):
            raise ValueError("question contains control characters")
        return value


class Citation(BaseModel):
    """A retrieved chunk that supports at least one sentence of the answer."""

    doc_key: str
    version_id: str | None = Field(description="the indexed version of the document (None: the index did not say)")
    chunk_id: str
    title: str
    heading_path: list[str]
    score: float = Field(description="the chunk's retrieval score (BM25)")
    quote: str = Field(description="the chunk's text that matches the answer")
    sentences: list[int] = Field(description="indexes of the answer sentences this chunk supports")


class RetrievedDocument(BaseModel):
    """A document retrieval offered to the model (cited or not)."""

    doc_key: str
    version_id: str | None
    title: str
    score: float
    coverage: float = Field(description="share of the question's terms found in the document's retrieved chunks")
    chunk_ids: list[str]


class Answer(BaseModel):
    """What ``POST /v1/ask`` returns."""

    question: str
    answer: str
    citations: list[Citation]
    grounded: bool = Field(description="False when the draft held factual tokens no retrieved chunk supports")
    unsupported: list[str] = Field(description="those factual tokens, as written in the draft")
    unsupported_sentences: list[str] = Field(
        default_factory=list, description="sentences of the answer that align with no retrieved chunk"
    )
    abstained: bool
    reason: AbstainReason | None = None
    model_version: str
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    retrieval: list[RetrievedDocument] = Field(default_factory=list)

    def pages_to_read(self, limit: int = PAGES_TO_READ) -> list[RetrievedDocument]:
        """The pages to point a reader to when the answer abstained although retrieval found pages
        above the relevance floor (every reason but ``no_relevant_documents``): those pages, best first,
        at most ``limit``. They are search results, not citations: nothing in them was checked to
        answer the question. Held-out questions worded as users word them mostly abstain for want of a
        line to copy while an answering page was retrieved (docs/answers.md).

        Examples
        --------
        >>> page = RetrievedDocument(doc_key="s3/v.md", version_id=None, title="Versioning", score=9.0,
        ...                          coverage=0.75, chunk_ids=["s3/v.md#0"])
        >>> weak = page.model_copy(update={"doc_key": "s3/w.md", "coverage": 0.2})
        >>> a = Answer(question="q", answer=NOT_COVERED, citations=[], grounded=True, unsupported=[],
        ...            abstained=True, reason="no_answer_in_context", model_version="m", latency_ms=1.0,
        ...            retrieval=[page, weak])
        >>> [d.doc_key for d in a.pages_to_read()]
        ['s3/v.md']
        >>> a.model_copy(update={"reason": "no_relevant_documents"}).pages_to_read()
        []
        """
        if not self.abstained or self.reason == "no_relevant_documents":
            return []
        return [d for d in self.retrieval if d.coverage >= MIN_COVERAGE][:limit]
