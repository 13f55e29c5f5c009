"""The answer prompt: retrieved passages, most relevant first, then the question and the answer cue.

The format is the serving chat format's grounded-answer prompt (:data:`docllm.serving.chat.ANSWER_PROMPT`:
``### Context:`` / ``### Question:`` / ``### Answer:`` blocks), with the passages numbered, each under
its heading line (:func:`render_prompt`)::

    ### Context:
    [1] Amazon S3 User Guide > Using versioning in S3 buckets > Enabling versioning
    <passage text>

    [2] ...
    <passage text>

    ### Question:
    How do I enable versioning on a bucket?

    ### Answer:

The answer-tuning examples must be rendered by :func:`render_prompt` too, so the model sees at serving
time exactly what it learned from. The model continues after ``### Answer:``; :data:`STOP` (the chat
format's: the model opening another ``###`` block) ends the answer. The numbers are for people reading
the prompt: citations do not trust them (:mod:`docllm.answers.cite`).

Budget. The prompt must fit ``context_length - max_tokens`` tokens (less :data:`SAFETY_TOKENS`). The
inference port offers no token counting, so tokens are *estimated* from UTF-8 bytes at
:data:`BYTES_PER_TOKEN` bytes per token. Measured with the tiny-s3 tokenizer (8,192 tokens) on 200
random pages of the corpus: 3.4 bytes per token on average, 2.5 at the 5th percentile of 600-character
windows, 2.0 at the 1st (tables, ARNs, code). 2.5 keeps most prompts inside the context while
wasting a quarter of it on average; when the engine still refuses the prompt
(``PromptTooLongError``), the service rebuilds it once at :data:`RETRY_BUDGET_SHARE` of the refused
prompt's estimated size.

Selection. Documents come best first, and within a document its best chunk first. A chunk that fits
whole goes in whole; the first chunk that does not is cut to its sentences that share the most terms with
the question (kept in reading order, joined by `` … ``; the best one always, cut at a word when it alone
is too long), so that a small context (256 tokens for the
``tiny`` preset) still holds the passage that answers; then the prompt is full.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence

from pydantic import BaseModel

from docllm.answers.retrieve import Retrieval, RetrievedChunk
from docllm.search.analyzer import analyze
from docllm.serving.chat import ANSWER_MARKER, BLOCK_SEPARATOR, CONTEXT_MARKER, STOP, render_answer_prompt

__all__ = ["ANSWER_MARKER", "CONTEXT_MARKER", "STOP", "build_prompt", "render_prompt"]

HEADING_SEPARATOR = " > "
ELLIPSIS = " … "

MAX_HEADING_CHARS = 120
"""Longest heading line; longer paths lose their outermost parts (guide, then page)."""
BYTES_PER_TOKEN = 2.5
SAFETY_TOKENS = 8
"""Headroom for the engine's own tokens (a BOS token) and the estimate's error on short texts."""
RETRY_BUDGET_SHARE = 0.6
MIN_PASSAGE_TOKENS = 16
"""A cut passage shorter than this is not worth its heading line: the prompt stops instead."""

_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n+")


class Passage(BaseModel):
    """One chunk as it appears in the prompt (possibly cut to its most relevant sentences)."""

    chunk: RetrievedChunk
    heading: str
    text: str
    cut: bool


class BuiltPrompt(BaseModel):
    prompt: str
    passages: list[Passage]
    estimated_tokens: int
    budget_tokens: int


def estimate_tokens(text: str) -> int:
    """A conservative token count for ``text`` (module docstring: the measurement behind it).

    Examples
    --------
    >>> estimate_tokens("Enable versioning.")
    8
    """
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def heading_of(chunk: RetrievedChunk) -> str:
    """The chunk's heading path, with its title first unless the path already holds it.

    Examples
    --------
    >>> c = RetrievedChunk(chunk_id="c", doc_key="d", version_id=None, service="s3", title="Versioning",
    ...                    heading_path=["S3 User Guide", "Versioning", "Enabling"], text="", score=1.0)
    >>> heading_of(c), heading_of(c.model_copy(update={"heading_path": ["Enabling"]}))
    ('S3 User Guide > Versioning > Enabling', 'Versioning > Enabling')
    """
    # Ingested chunks' paths already hold the title (Guide > Page > Section); others may not.
    parts = chunk.heading_path if chunk.title in chunk.heading_path else [chunk.title, *chunk.heading_path]
    parts = [" ".join(p.split()) for p in parts if p.strip()]
    # A deep path can cost more of a small context than its passage: the most specific parts stay.
    while len(parts) > 1 and len(HEADING_SEPARATOR.join(parts)) > MAX_HEADING_CHARS:
        parts = parts[1:]
    return HEADING_SEPARATOR.join(parts)[-MAX_HEADING_CHARS:]


def render_prompt(passages: Sequence[tuple[str, str]], question: str) -> str:
    """The prompt for ``(heading, text)`` passages and a question (module docstring: the format).

    Examples
    --------
    >>> print(render_prompt([("Versioning > Enabling", "Choose Enable.")], "How do I enable versioning?"))
    ### Context:
    [1] Versioning > Enabling
    Choose Enable.
    <BLANKLINE>
    ### Question:
    How do I enable versioning?
    <BLANKLINE>
    ### Answer:
    <BLANKLINE>
    """
    context = BLOCK_SEPARATOR.join(f"[{n}] {heading}\n{text.strip()}" for n, (heading, text) in enumerate(passages, 1))
    return render_answer_prompt(context, " ".join(question.split()))


def budget_for(context_length: int, max_tokens: int, *, share: float = 1.0) -> int:
    """Prompt tokens allowed: the context less the answer's tokens and the safety margin, times ``share``."""
    return max(0, math.floor((context_length - max_tokens - SAFETY_TOKENS) * share))


def build_prompt(retrieval: Retrieval, question: str, *, budget_tokens: int) -> BuiltPrompt:
    """The prompt for ``question`` over ``retrieval`` within ``budget_tokens`` (estimated).

    The question and answer cue always go in; passages fill what is left (module docstring). When not
    even one passage fits, the prompt holds none: the service then abstains rather than answer blind.
    """
    terms = set(analyze(question))
    passages: list[Passage] = []
    used = estimate_tokens(render_prompt([], question))
    for doc in retrieval.documents:
        for chunk in doc.chunks:
            heading = heading_of(chunk)
            block_cost = estimate_tokens(f"[{len(passages) + 1}] {heading}\n{BLOCK_SEPARATOR}")
            left = budget_tokens - used - block_cost
            whole = chunk.text.strip()
            if estimate_tokens(whole) <= left:
                passages.append(Passage(chunk=chunk, heading=heading, text=whole, cut=False))
                used += block_cost + estimate_tokens(whole)
                continue
            if left >= MIN_PASSAGE_TOKENS:
                text = _best_sentences(whole, terms, left)
                if text:
                    passages.append(Passage(chunk=chunk, heading=heading, text=text, cut=True))
                    used += block_cost + estimate_tokens(text)
            return _built(passages, question, budget_tokens)
    return _built(passages, question, budget_tokens)


def _built(passages: list[Passage], question: str, budget_tokens: int) -> BuiltPrompt:
    prompt = render_prompt([(p.heading, p.text) for p in passages], question)
    return BuiltPrompt(
        prompt=prompt, passages=passages, estimated_tokens=estimate_tokens(prompt), budget_tokens=budget_tokens
    )


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _best_sentences(text: str, terms: set[str], budget: int) -> str:
    """The sentences of ``text`` sharing the most terms with the question that fit ``budget`` tokens,
    in reading order. The best sentence always goes in, cut at a word boundary when it alone is too long;
    the others only when they fit whole. Neighbouring sentences keep the text between them (line breaks
    of lists and headings), others are joined by :data:`ELLIPSIS`."""
    spans = _sentence_spans(text)
    if not spans:
        return ""
    shared = [len(terms & set(analyze(text[slice(*span)]))) for span in spans]
    best = min(range(len(spans)), key=lambda i: (-shared[i], i))
    # After the best sentence: the others that share terms with the question, best first, then the
    # best sentence's neighbours (following first): the context of the answer, not stray fragments.
    matching = sorted((i for i in range(len(spans)) if shared[i] and i != best), key=lambda i: (-shared[i], i))
    rest = sorted(
        (i for i in range(len(spans)) if not shared[i] and i != best), key=lambda i: (abs(i - best), i < best)
    )
    ranked = [best, *matching, *rest]
    a, b = spans[best]
    if estimate_tokens(text[a:b]) > budget:
        head = text[a:b].encode("utf-8")[: int(budget * BYTES_PER_TOKEN)].decode("utf-8", "ignore")
        return head.rsplit(" ", 1)[0] if " " in head else head
    chosen = [best]
    spent = estimate_tokens(text[a:b])
    for i in ranked[1:]:
        cost = estimate_tokens(ELLIPSIS + text[slice(*spans[i])])
        if spent + cost <= budget:
            chosen.append(i)
            spent += cost
    chosen.sort()
    out = text[slice(*spans[chosen[0]])]
    for prev, i in itertools.pairwise(chosen):
        out += (text[spans[prev][1] : spans[i][0]] if i == prev + 1 else ELLIPSIS) + text[slice(*spans[i])]
    return out
