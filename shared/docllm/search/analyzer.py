"""English analyzer for technical documentation (pure, shared by every search engine).

Plain word tokenizers break the identifiers people actually search for in
cloud docs: ``s3:PutObject`` becomes ``s3``/``putobject``, ``--dry-run``
loses its meaning, ``PutBucketPolicy`` is one opaque word that never
matches a question about "bucket policy". This analyzer keeps each
identifier whole *and* emits its parts, in the spirit of Lucene's
``word_delimiter_graph`` with ``preserve_original``:

``s3:PutObject`` -> ``s3:putobject``, ``s3``, ``putobject``, ``put``, ``object``

Steps, in order:

1. Markdown backslash escapes (``versioning\\-suspended``) are removed, so the
   escaped form and the plain form analyze alike.
2. Compound tokens are found: runs of letters/digits joined by ``: . - _ /``.
3. Each compound is split on those delimiters into segments, and each
   segment on case changes (``PutObject`` -> ``Put``, ``Object``;
   ``HTTPServer`` -> ``HTTP``, ``Server``). Letter/digit boundaries are *not*
   split: ``ec2``, ``s3``, ``x86`` stay whole.
4. Lowercase; English stopwords are dropped (only as whole tokens).
5. Purely alphabetic tokens are stemmed with the Porter stemmer (the
   algorithm OpenSearch's ``stemmer`` filter uses for ``english``); tokens
   holding digits or delimiters (versions, ARNs, actions) are kept verbatim.

The OpenSearch adapter declares the closest equivalent analysis chain; see
``docs/retrieval.md`` for where the two differ.
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

# Letters/digits, optionally joined by delimiters, never starting or ending on one:
# "1.2.3", "s3:PutObject", "dry-run", "arn:aws:iam::123456789012:root".
_COMPOUND = re.compile(r"[^\W_](?:[\w.:/\-]*[^\W_])?")
_MD_ESCAPE = re.compile(r"\\(?=[^\w\s])")
_DELIMS = re.compile(r"[.:/\-_]+")
# Case-change boundaries: "putObject" | "HTTPServer" (before the last capital of a run).
_CASE_SPLIT = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_ALPHA = re.compile(r"[a-z]+")

#: Lucene's English stop set (what OpenSearch's ``_english_`` stop filter uses).
STOPWORDS: frozenset[str] = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)

_stemmer = Stemmer.Stemmer("porter")
_MAX_TOKEN_CHARS = 64  # base64 blobs and hashes are noise for ranking and bloat the index


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    # PyStemmer is C, but the cache still halves analysis time on real docs,
    # where a few thousand words make up most of the text.
    return str(_stemmer.stemWord(word))


def _normalise(token: str) -> str | None:
    low = token.lower()
    if low in STOPWORDS or len(low) > _MAX_TOKEN_CHARS:
        return None
    if _ALPHA.fullmatch(low):
        return _stem(low)
    return low


@lru_cache(maxsize=100_000)
def _expand(compound: str) -> tuple[str, ...]:
    out: list[str] = []
    segments = [s for s in _DELIMS.split(compound) if s]
    # The whole compound first (only when it really is compound), then each
    # segment, then the case-split words of each segment.
    if len(segments) > 1:
        out.append(compound)
    for seg in segments:
        words = _CASE_SPLIT.split(seg)
        out.append(seg)
        if len(words) > 1:
            out.extend(words)
    normalised = (_normalise(t) for t in out)
    return tuple(t for t in normalised if t)


def analyze(text: str) -> list[str]:
    """Turn text into index terms.

    Parameters
    ----------
    text
        Any text; Markdown escapes are tolerated.

    Returns
    -------
    list[str]
        Terms in document order; a compound yields its whole form then its parts.

    Examples
    --------
    >>> analyze("Grant s3:PutObject with --dry-run")
    ['grant', 's3:putobject', 's3', 'putobject', 'put', 'object', 'dry-run', 'dry', 'run']
    """
    text = _MD_ESCAPE.sub("", text)
    terms: list[str] = []
    for match in _COMPOUND.finditer(text):
        terms.extend(_expand(match.group()))
    return terms


def analyze_query(text: str) -> list[str]:
    """Analyze a query: the same terms as :func:`analyze`, each once, in first-seen order.

    Examples
    --------
    >>> analyze_query("bucket policy for the bucket")
    ['bucket', 'polici']
    """
    return list(dict.fromkeys(analyze(text)))
