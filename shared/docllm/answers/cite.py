"""Citations by alignment: each answer sentence is matched against the chunks it could come from.

A model that prints ``[2]`` may print the wrong number, or none; a small model copies text far more
reliably than it counts. So the answer is split into sentences (:func:`split_sentences`) and each is
compared with every chunk in the prompt, on lowercased word tokens (runs of letters and digits):

* ``span``: the longest run of consecutive tokens the sentence and the chunk share;
* ``overlap``: the share of the sentence's content tokens (not in :data:`FUNCTION_WORDS`) that occur
  anywhere in the chunk.

A sentence is **supported** by a chunk when ``span >= MIN_SPAN`` (5 tokens: a phrase, not a coincidence
of common words), or when the whole sentence is that run (a short sentence copied verbatim), or when
``overlap >= MIN_OVERLAP`` (0.7) with at least :data:`MIN_OVERLAP_TOKENS` content tokens (a paraphrase
that reorders the chunk's words). The supporting chunk is the one with the longest span, then the
highest overlap, then the better retrieval rank. Its ``quote`` is the chunk sentence(s) around the
longest shared run (or, for an overlap match, the chunk sentence sharing the most content tokens),
cut to :data:`QUOTE_MAX_CHARS`.

A sentence with no content token ("Yes.") needs no support; any other sentence no chunk supports is
reported (``unsupported_sentences``). Citations are one per supporting chunk, in the order of the
first sentence each supports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from docllm.answers.models import Citation
from docllm.answers.retrieve import RetrievedChunk

MIN_SPAN = 5
MIN_OVERLAP = 0.7
MIN_OVERLAP_TOKENS = 3
QUOTE_MAX_CHARS = 300

_FUNCTION_WORDS = (
    "a an and are as at be but by can for from has have if in into is it its may must no not of on or so "
    "such that the their then there these they this to was were will with you your use using used yes ok"
)
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())
"""Words too common to count as evidence of where a sentence came from."""

_WORD = re.compile(r"[A-Za-z0-9]+")
# A sentence ends at . ! ? followed by whitespace (not inside 3.5 or s3.amazonaws.com), or at a line break.
_SENTENCE = re.compile(r"[^\n]+?(?:[.!?](?=\s|$)|$)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class _Tokens:
    words: list[str]
    spans: list[tuple[int, int]]

    @classmethod
    def of(cls, text: str) -> _Tokens:
        found = list(_WORD.finditer(text))
        return cls([m.group().lower() for m in found], [m.span() for m in found])


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, empty ones dropped.

    Examples
    --------
    >>> split_sentences("Objects can be up to 5 TB. Use s3.amazonaws.com!\\nDone")
    ['Objects can be up to 5 TB.', 'Use s3.amazonaws.com!', 'Done']
    """
    return [s for m in _SENTENCE.finditer(text) if (s := m.group().strip())]


def _content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w not in FUNCTION_WORDS]


def align_sentence(sentence: str, chunks: Sequence[str]) -> tuple[int, int, float, tuple[int, int]] | None:
    """``(chunk index, span, overlap, (start, end) chars of the shared run in the chunk)`` of the chunk
    that best supports ``sentence``, or None when none does (module docstring: the rule)."""
    s = _Tokens.of(sentence)
    content = _content(s.words)
    if not content:
        return None
    best: tuple[int, int, float, tuple[int, int]] | None = None
    for i, chunk in enumerate(chunks):
        c = _Tokens.of(chunk)
        if not c.words:
            continue
        m = SequenceMatcher(None, s.words, c.words, autojunk=False).find_longest_match(0, len(s.words), 0, len(c.words))
        present = set(c.words)
        overlap = sum(1 for w in content if w in present) / len(content)
        supported = (
            m.size >= MIN_SPAN
            or (m.size == len(s.words) and m.size > 0)
            or (overlap >= MIN_OVERLAP and len(content) >= MIN_OVERLAP_TOKENS)
        )
        if not supported:
            continue
        where = (c.spans[m.b][0], c.spans[m.b + m.size - 1][1]) if m.size else _densest_sentence(chunk, content)
        if best is None or (m.size, overlap) > (best[1], best[2]):
            best = (i, m.size, overlap, where)
    return best


def _densest_sentence(chunk: str, content: Sequence[str]) -> tuple[int, int]:
    wanted = set(content)
    spans = [m.span() for m in _SENTENCE.finditer(chunk) if m.group().strip()]
    return max(spans, key=lambda sp: len(wanted & set(_Tokens.of(chunk[sp[0] : sp[1]]).words)), default=(0, 0))


def quote_around(chunk: str, start: int, end: int) -> str:
    """The chunk sentence(s) holding ``chunk[start:end]``, at most :data:`QUOTE_MAX_CHARS` around it.

    Examples
    --------
    >>> quote_around("Intro here. Versioning keeps every version. Outro.", 12, 22)
    'Versioning keeps every version.'
    """
    sentences = [m.span() for m in _SENTENCE.finditer(chunk)]
    lo = next((a for a, b in sentences if a <= start < b), start)
    hi = next((b for a, b in sentences if a < end <= b), end)
    if hi - lo > QUOTE_MAX_CHARS:  # centre the window on the match, whole words only
        middle = (start + end) // 2
        lo = max(lo, middle - QUOTE_MAX_CHARS // 2)
        hi = min(hi, lo + QUOTE_MAX_CHARS)
        text = chunk[lo:hi]
        if lo > 0 and not chunk[lo - 1].isspace():
            text = text.split(" ", 1)[-1]
        if hi < len(chunk) and not chunk[hi].isspace():
            text = text.rsplit(" ", 1)[0]
        return " ".join(text.split())
    return " ".join(chunk[lo:hi].split())


def cite(answer: str, chunks: Sequence[RetrievedChunk]) -> tuple[list[Citation], list[str]]:
    """Citations for ``answer`` from ``chunks`` (best retrieval first), and the sentences none supports.

    Examples
    --------
    >>> c = RetrievedChunk(chunk_id="v#1", doc_key="s3/versioning.md", version_id="7", service="s3",
    ...                    title="Versioning", heading_path=["Enabling"], score=3.0,
    ...                    text="To enable versioning, open the bucket and choose Edit under Bucket Versioning.")
    >>> citations, unsupported = cite("Open the bucket and choose Edit under Bucket Versioning. It rains.", [c])
    >>> [(x.chunk_id, x.sentences) for x in citations], unsupported
    ([('v#1', [0])], ['It rains.'])
    """
    texts = [c.text for c in chunks]
    by_chunk: dict[int, Citation] = {}
    unsupported: list[str] = []
    for n, sentence in enumerate(split_sentences(answer)):
        if not _content(_Tokens.of(sentence).words):
            continue  # claims nothing, needs no source
        found = align_sentence(sentence, texts)
        if found is None:
            unsupported.append(sentence)
            continue
        i, _span, _overlap, (start, end) = found
        if i in by_chunk:
            by_chunk[i].sentences.append(n)
            continue
        chunk = chunks[i]
        by_chunk[i] = Citation(
            doc_key=chunk.doc_key,
            version_id=chunk.version_id,
            chunk_id=chunk.chunk_id,
            title=chunk.title,
            heading_path=chunk.heading_path,
            score=chunk.score,
            quote=quote_around(chunk.text, start, end),
            sentences=[n],
        )
    return list(by_chunk.values()), unsupported
