"""Copy-constrained decoding: the model chooses what to say, but only among the given sources.

A grounded answer path cannot trust a small model to stay within its context: it names actions,
services and numbers the passages do not contain, and the grounding check then has to refuse the
whole answer. With ``GenerationParams.copy_from`` the engine lets the model pick, token by token,
only continuations that copy one of the sources from its start: the first token must start a
source, each next token must continue a source that the text so far matches, and the sequence may
end (end of sequence) only where a sentence ends in that source, or at its end. Sources are
sentences (the answer path splits them): an answer copies one sentence, or its first clauses. The
model's own logits decide which sentence it starts and how far it goes, so the answer is still the
model's choice, and it is grounded and citable by construction.

The state is the set of places ``(source, position)`` the text generated so far matches; the
allowed next tokens are the tokens at those places. A source is tokenized on its own, so text that
straddles two sources is never produced.

Example
-------
>>> c = CopyConstraint([[5, 6, 7], [5, 8], [9]], sentence_ends=[{2}, {1}, set()], eos_id=0)
>>> sorted(c.allowed())
[5, 9]
>>> c.advance(5); sorted(c.allowed())
[6, 8]
>>> c.advance(8); sorted(c.allowed())
[0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: The ``eos_id`` of a tokenizer without one: a copy then ends by ``max_tokens`` or a stop string.
NO_EOS = -1

#: Characters that end a sentence when a token's text ends with one of them.
SENTENCE_END = (".", "!", "?", ":", ";")


class CopyConstraint:
    """Which tokens may come next so that the continuation copies a span of one of ``sources``.

    ``sources`` are token ids; ``sentence_ends[i]`` holds the positions ``p`` of source ``i`` after
    whose token a sentence ends (a span may stop there and the next sentence may start at ``p + 1``).
    A span may also stop at the end of its source.
    """

    def __init__(self, sources: Sequence[Sequence[int]], *, sentence_ends: Sequence[set[int]], eos_id: int) -> None:
        self.sources = [list(s) for s in sources]
        self.ends = [set(e) for e in sentence_ends]
        self.eos_id = eos_id
        # A span starts where a source starts: a sentence boundary inside a source is a guess from token
        # text ("aws." in a URL), so the caller passes sentences it split itself; inside one, the guess
        # only offers the model an earlier stop.
        self._places = [(i, 0) for i, src in enumerate(self.sources) if src]
        self._started = False

    def allowed(self) -> set[int]:
        """The token ids the model may choose next: when nothing can follow, only EOS (nothing at all
        without an EOS: the engine then chooses freely and the answer path's checks decide)."""
        tokens = {self.sources[i][p] for i, p in self._places if p < len(self.sources[i])}
        if self._started and (not tokens or any(self._may_stop(i, p) for i, p in self._places)):
            tokens.add(self.eos_id)
        tokens.discard(NO_EOS)
        return tokens

    def advance(self, token: int) -> None:
        """Take ``token`` (one of :meth:`allowed`) as chosen."""
        self._started = True
        self._places = [(i, p + 1) for i, p in self._places if p < len(self.sources[i]) and self.sources[i][p] == token]

    def _may_stop(self, i: int, p: int) -> bool:
        return p >= len(self.sources[i]) or (p - 1) in self.ends[i]


def sentence_ends(ids: Sequence[int], piece: Callable[[int], str]) -> set[int]:
    """Positions in ``ids`` whose token's text ends a sentence (``piece``: one token's text).

    Example
    -------
    >>> sorted(sentence_ends([1, 2, 3, 4], {1: "Hi", 2: ".", 3: " Yes", 4: "!"}.__getitem__))
    [1, 3]
    """
    return {p for p, t in enumerate(ids) if piece(t).rstrip().endswith(SENTENCE_END)}


def copy_choices(sources: Sequence[str]) -> list[str]:
    """The texts a copy-constrained answer may be, for an engine that takes a list of choices instead
    of ``copy_from`` (vLLM's ``structured_outputs: {"choice": [...]}``): each source up to each of its
    sentence ends, and each whole source; once each, in order.

    It is the same set of answers the engine's :class:`CopyConstraint` allows, read at the level of
    text rather than tokens (vLLM may tokenize a choice differently; the text is what is checked).

    Example
    -------
    >>> copy_choices(["Enable it: open the bucket. Then save.", "Names are global", ""])
    ['Enable it:', 'Enable it: open the bucket.', 'Enable it: open the bucket. Then save.', 'Names are global']
    """
    out: dict[str, None] = {}
    for source in sources:
        text = source.strip()
        for i, ch in enumerate(text):
            if ch in SENTENCE_END and (i + 1 == len(text) or text[i + 1].isspace()):
                out[text[: i + 1]] = None
        if text:
            out[text] = None
    return list(out)
