"""Grounding: the evaluation's hallucination measure applied to one answer.

An answer is grounded when every factual token it holds (URLs, ARNs, CLI commands and flags, API
actions, service names, code identifiers, numbers with units: :mod:`docllm.evaluation.grounding`)
occurs in the retrieved chunks the prompt was built from. The check is
:func:`docllm.evaluation.grounding.unsupported_tokens` itself, so the answer path and the evaluation's
hallucination rate cannot disagree about what "unsupported" means.

The threshold is zero: one unsupported factual token fails the answer. An answer's factual tokens
are the part a reader acts on (a flag, a limit, an action name); one invented limit is the failure
this check exists for, and a rate threshold would let it through in a long answer.

The sources are the full texts of the chunks in the prompt plus their headings (what the model was
shown, and what the citations point to), not the cut passages alone: a token from a chunk's
uncut part is still supported by the page cited.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from docllm.answers.prompt import Passage
from docllm.evaluation.grounding import factual_tokens, unsupported_tokens

MAX_UNSUPPORTED = 0
"""Unsupported factual tokens an answer may hold and still be returned."""


class Grounding(BaseModel):
    grounded: bool
    factual: list[str]
    unsupported: list[str]


def sources_of(passages: Sequence[Passage]) -> list[str]:
    """What grounds an answer: each prompt chunk's heading and whole text."""
    return [f"{p.heading}\n{p.chunk.text}" for p in passages]


def check_grounding(answer: str, sources: Sequence[str]) -> Grounding:
    """Whether ``answer`` is supported by ``sources`` (module docstring: the rule).

    Examples
    --------
    >>> g = check_grounding("Objects can be up to 7 TB.", ["Individual objects can be up to 5 TB in size."])
    >>> g.grounded, g.unsupported
    (False, ['7 TB'])
    """
    missing = [t.text for t in unsupported_tokens(answer, sources)]
    return Grounding(
        grounded=len(missing) <= MAX_UNSUPPORTED,
        factual=[t.text for t in factual_tokens(answer)],
        unsupported=missing,
    )
