"""How a generated answer is compared with an expected one: normalisation, exact match, token F1.

The SQuAD recipe (lowercase, drop punctuation and articles, compare tokens) with one change for
technical text: identifier characters stay inside tokens, because ``--bucket``, ``s3:GetObject``,
``max_keys`` and ``99.99%`` are answers in their own right and ``s3 getobject`` is not. Only the
punctuation *around* words goes. docs/evaluation.md ("Scoring") has the definitions with examples.
"""

from __future__ import annotations

import re
from collections import Counter

ARTICLES = frozenset({"a", "an", "the"})
IDENTIFIER_CHARS = "-_./:%*"
"""Characters kept inside a token; elsewhere every non-alphanumeric character separates tokens."""

# Thousands separators go first, so "3,500" and "3500" are the same answer.
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SEPARATOR = re.compile(r"[^\w\s" + re.escape(IDENTIFIER_CHARS) + r"]")
# Sentence punctuation and Markdown emphasis around a token ("PutObject." "_note_" "/path/").
_EDGE_TRAIL = ".:/_"
_EDGE_LEAD = ".:_"
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def normalize_tokens(text: str) -> list[str]:
    """The tokens of ``text`` compared by both metrics.

    1. lowercase; thousands separators between digits removed (``3,500`` → ``3500``);
    2. every character that is neither a letter, a digit, whitespace nor one of ``- _ . / : % *``
       becomes a space (quotes, backticks, brackets, commas, ``!``, ``?``, ``;``, ``$``, ``#``, …);
    3. split on whitespace; strip ``. : / _`` from the end of each token and ``. : _`` from its start
       (sentence punctuation, emphasis; a leading ``/`` or ``-`` stays: ``/path``, ``--bucket``), and a
       ``*`` pair around it (``*get*``; a lone trailing ``*`` stays: ``s3:Get*``);
    4. drop empty tokens, tokens made only of identifier characters, and the articles a, an, the.

    Example
    -------
    >>> normalize_tokens("Use the `--bucket` flag with s3:GetObject, up to 3,500 requests.")
    ['use', '--bucket', 'flag', 'with', 's3:getobject', 'up', 'to', '3500', 'requests']
    """
    text = _THOUSANDS.sub("", text.lower())
    text = _SEPARATOR.sub(" ", text)
    out: list[str] = []
    for raw in text.split():
        token = raw.rstrip(_EDGE_TRAIL).lstrip(_EDGE_LEAD)
        if len(token) > 1 and token.startswith("*") and token.endswith("*"):
            token = token.strip("*").rstrip(_EDGE_TRAIL).lstrip(_EDGE_LEAD)
        if not token or token in ARTICLES or all(c in IDENTIFIER_CHARS for c in token):
            continue
        out.append(token)
    return out


def normalize_answer(text: str) -> str:
    """:func:`normalize_tokens` joined by single spaces.

    Example
    -------
    >>> normalize_answer("  The Amazon S3   console. ")
    'amazon s3 console'
    """
    return " ".join(normalize_tokens(text))


def exact_match(prediction: str, answer: str) -> float:
    """1.0 when both normalise to the same token sequence, else 0.0.

    Example
    -------
    >>> exact_match("5 TB.", "5 TB"), exact_match("5 GB", "5 TB")
    (1.0, 0.0)
    """
    return 1.0 if normalize_tokens(prediction) == normalize_tokens(answer) else 0.0


def token_f1(prediction: str, answer: str) -> float:
    """F1 of the normalised token multisets: ``2·P·R / (P + R)`` with ``P = common / |prediction|``,
    ``R = common / |answer|`` and ``common`` the size of the multiset intersection.

    Both empty: 1.0 (nothing expected, nothing said); one empty: 0.0.

    Example
    -------
    >>> round(token_f1("up to 5 TB", "5 TB"), 3)
    0.667
    """
    pred, gold = normalize_tokens(prediction), normalize_tokens(answer)
    if not pred or not gold:
        return 1.0 if pred == gold else 0.0
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def contains(prediction: str, answer: str) -> float:
    """1.0 when the normalised answer occurs in the normalised prediction as whole tokens.

    Example
    -------
    >>> contains("The limit is 5 TB per object.", "5 TB"), contains("55 TB", "5 TB")
    (1.0, 0.0)
    """
    pred, gold = normalize_tokens(prediction), normalize_tokens(answer)
    if not gold:
        return 1.0
    n = len(gold)
    return 1.0 if any(pred[i : i + n] == gold for i in range(len(pred) - n + 1)) else 0.0


def answer_span(generated: str, answer: str) -> str:
    """The part of a free continuation compared with a short expected ``answer``.

    A language model asked to continue "... you can create up to" goes on past the answer
    ("100 buckets in each account. If you need ..."). The span is:

    1. ``generated`` without leading whitespace;
    2. cut before the first line break;
    3. cut after the first sentence end: ``.``, ``!`` or ``?`` followed by whitespace or the end
       (a dot inside ``s3.amazonaws.com`` or ``99.99`` is not an end; the end mark itself is kept and
       then ignored by normalisation);
    4. its first ``n`` whitespace-separated words, ``n`` the number of whitespace-separated words of
       ``answer`` (at least 1).

    So a model is not penalised for going on after a right answer, and is judged on as many
    words as the answer has: "100 buckets in each account" → "100 buckets".

    Example
    -------
    >>> answer_span(" 100 buckets in each account. If you need more", "100 buckets")
    '100 buckets'
    >>> answer_span("PutObject.\\nThen", "CreateMultipartUpload")
    'PutObject.'
    """
    text = generated.lstrip()
    text = text.split("\n", 1)[0]
    end = _SENTENCE_END.search(text)
    if end is not None:
        text = text[: end.end()]
    n = max(1, len(answer.split()))
    return " ".join(text.split()[:n])
