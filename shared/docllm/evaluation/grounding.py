"""Factual tokens, their support in a source, the hallucination rate and the domain-vocabulary score.

This module is *the* definition of "a generated fact the sources do not support": the
evaluation's hallucination rate and the answers' grounding check both call
:func:`unsupported_tokens`, so the two can never disagree. No external judge, no model:
patterns and string comparisons only, so the measure is cheap, repeatable and explainable
(each unsupported token can be shown to a person). docs/evaluation.md has the definitions
with examples; the patterns below are the reference.

Kinds of factual token (:data:`KINDS`), in the order overlaps are resolved:

``url``
    ``http://`` or ``https://`` up to whitespace or a bracket/quote; trailing ``.,;:!?`` dropped.
``arn``
    ``arn:<partition>:<service>:<region>:<account>:<resource>`` (``arn:aws:s3:::bucket/*``).
``cli_command``
    ``aws <service> [<command>]`` in lowercase (``aws s3api put-object``, ``aws configure``).
``cli_flag``
    ``--name`` with lowercase letters, digits and inner hyphens (``--bucket``, ``--sse-kms-key-id``).
``api_action``
    An IAM action ``prefix:Action`` (``s3:GetObject``, ``s3:Put*``, ``s3:*``), or a CamelCase word that
    starts with an API verb of :data:`API_VERBS` and has at least one more capitalised part
    (``PutObject``, ``GetBucketPolicy``, ``ListObjectsV2``).
``service``
    ``Amazon`` or ``AWS`` followed by one to six capitalised words (``Amazon S3``, ``AWS Key Management
    Service``, ``Amazon S3 Glacier Deep Archive``); ``and``/``for``/``of`` may join two capitalised words
    (``AWS Identity and Access Management``). A bare ``AWS`` or ``Amazon`` is the company, not a service.
``code_identifier``
    snake_case (``max_keys``, ``AWS_ACCESS_KEY_ID``) or dotted names (``boto3.client``, ``index.html``);
    abbreviations such as ``e.g`` (every part one letter) are not identifiers.
``number``
    A number (``3,500``, ``99.99``, ``1024``) not glued to letters, with an optional unit
    (``5 TB``, ``99.99%``, ``100 buckets``, ``15 minutes``; :data:`UNITS`). A bare integer below 10 with
    no unit is *not* a factual token: list numbers and "step 2" would otherwise dominate. Parts of dates
    and ranges (``2006-03-01``, ``1-10``) and of names (``S3``, ``us-east-1``, ``2xlarge``) are not numbers.

Where patterns overlap (a URL contains dotted names, an ARN contains ``s3:``), the match that
starts first wins, then the longer one, then the kind listed first above.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

Kind = Literal["url", "arn", "cli_command", "cli_flag", "api_action", "service", "code_identifier", "number"]
KINDS: tuple[Kind, ...] = (
    "url", "arn", "cli_command", "cli_flag", "api_action", "service", "code_identifier", "number",
)  # fmt: skip
"""Every kind of factual token, in overlap-resolution priority."""

API_VERBS: tuple[str, ...] = (
    "Abort", "Accept", "Add", "Allocate", "Assume", "Associate", "Attach", "Authorize", "Batch", "Cancel",
    "Change", "Complete", "Confirm", "Copy", "Create", "Decrypt", "Delete", "Deregister", "Describe", "Detach",
    "Disable", "Disassociate", "Enable", "Encrypt", "Export", "Generate", "Get", "Head", "Import", "Invoke",
    "List", "Modify", "Publish", "Purge", "Put", "Query", "Read", "Reboot", "Receive", "Register", "Reject",
    "Release", "Remove", "Renew", "Replicate", "Request", "Reset", "Restore", "Retrieve", "Revoke", "Rotate",
    "Run", "Scan", "Search", "Select", "Send", "Set", "Sign", "Start", "Stop", "Subscribe", "Tag", "Terminate",
    "Test", "Unsubscribe", "Untag", "Update", "Upload", "Validate", "Verify", "Write",
)  # fmt: skip
"""Verbs that open AWS API action names; a CamelCase word without one is not an action (``CloudFront``)."""

_KIB = 1024
_SIZE: dict[str, Decimal] = {
    unit: Decimal(_KIB**power)
    for power, units in enumerate(
        (("b", "byte"), ("kb", "kib", "kilobyte"), ("mb", "mib", "megabyte"), ("gb", "gib", "gigabyte"),
         ("tb", "tib", "terabyte"), ("pb", "pib", "petabyte"))
    )
    for unit in units
}  # fmt: skip
_DAY = 86400
_TIME: dict[str, Decimal] = {
    "ms": Decimal("0.001"), "millisecond": Decimal("0.001"), "s": Decimal(1), "sec": Decimal(1),
    "second": Decimal(1), "min": Decimal(60), "minute": Decimal(60), "hr": Decimal(3600), "hour": Decimal(3600),
    "day": Decimal(_DAY), "week": Decimal(7 * _DAY), "month": Decimal(30 * _DAY), "year": Decimal(365 * _DAY),
}  # fmt: skip
_COUNT_NOUNS = (
    "bucket", "object", "part", "request", "character", "tag", "key", "version", "rule", "region", "account",
    "user", "policy", "policies", "item", "file", "time", "entry", "entries", "record", "connection", "thread",
    "retry", "retries", "attempt", "digit", "letter", "prefix", "prefixes", "operation", "event", "job",
    "access point", "endpoint", "grant", "condition", "statement", "header", "byte range", "copy", "copies",
)  # fmt: skip
UNITS: tuple[str, ...] = tuple(sorted({*_SIZE, *_TIME, "%", "percent", *_COUNT_NOUNS}))
"""Unit words a number may carry (singular; a plural ``s``/``es`` is accepted). Sizes are binary (1 KB = 1024
bytes, the convention of the AWS guides), times are converted to seconds, counts compare by noun."""


def _unit_alternation() -> str:
    words = sorted({*_SIZE, *_TIME, "percent", *_COUNT_NOUNS}, key=lambda w: (-len(w), w))
    alts = [re.escape(w).replace(r"\ ", r"\s+") + ("(?:e?s)?" if len(w) > 2 else "") for w in words]
    return "|".join(alts)


# Each pattern is documented in the module docstring; the names are the kinds.
_PATTERNS: dict[Kind, re.Pattern[str]] = {
    "url": re.compile(r"https?://[^\s<>()\[\]{}`'\"]+"),
    "arn": re.compile(r"\barn:aws[a-z-]*:[a-z0-9-]*:[a-z0-9-]*:[A-Za-z0-9*_-]*:[^\s<>()\[\]{}`'\",;]+"),
    "cli_command": re.compile(r"(?<![\w-])aws[ \t]+[a-z][a-z0-9-]*(?:[ \t]+[a-z][a-z0-9-]*)?(?![\w-])"),
    "cli_flag": re.compile(r"(?<![\w-])--[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?![\w-])"),
    "api_action": re.compile(
        r"(?<![\w:-])[a-z][a-z0-9-]*:(?:[A-Z][A-Za-z0-9]*\*?|\*)(?![\w*])"
        r"|(?<![\w:-])(?:" + "|".join(API_VERBS) + r")(?:[A-Z][a-z0-9]*|[A-Z]{2,}(?![a-z]))+(?!\w)"
    ),
    "service": re.compile(
        r"\b(?:Amazon|AWS)"
        # An API action after a service name is not part of it ("Amazon S3 PutObject requests").
        r"(?:[ \t]+(?!Amazon\b|AWS\b|(?:" + "|".join(API_VERBS) + r")[A-Z])(?:[A-Z0-9][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*)"
        r"(?:[ \t]+(?:and|for|of)[ \t]+(?!Amazon\b|AWS\b)[A-Z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*)?){1,6}"
    ),
    "code_identifier": re.compile(
        r"(?<![\w.-])(?:[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)"
        r"(?![\w-]|\.\w)"
    ),
    "number": re.compile(
        r"(?<![\w.,-])(?P<value>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?!\d|[\w,]\d|\.\d|-\d)"
        r"(?:[ \t]?(?P<pct>%)|[ \t]*(?P<unit>" + _unit_alternation() + r")(?!\w))?"
        # A number glued to letters that are not a unit is part of a name (2xlarge, 3rd).
        r"(?(unit)|(?(pct)|(?![A-Za-z_])))",
        re.IGNORECASE,
    ),
}
_TRAILING = {"url": ".,;:!?", "arn": ".:"}
_API_ACTION_RE = _PATTERNS["api_action"]


@dataclass(frozen=True, slots=True)
class FactualToken:
    """One factual token: its text as written, its kind and its character span in the text."""

    text: str
    kind: Kind
    start: int
    end: int


def factual_tokens(text: str) -> list[FactualToken]:
    """Every factual token of ``text``, in reading order, without overlaps (module docstring: the kinds).

    Example
    -------
    >>> [(t.kind, t.text) for t in factual_tokens("Amazon S3 stores objects up to 5 TB; call PutObject with --bucket.")]
    [('service', 'Amazon S3'), ('number', '5 TB'), ('api_action', 'PutObject'), ('cli_flag', '--bucket')]
    """
    return _resolve(_candidates(text))


def _candidates(text: str) -> list[FactualToken]:
    found: list[FactualToken] = []
    for kind, pattern in _PATTERNS.items():
        for m in pattern.finditer(text):
            start, end = m.span()
            if kind in _TRAILING:
                while end > start and text[end - 1] in _TRAILING[kind]:
                    end -= 1
            token = text[start:end]
            if kind == "service" and service_key(token) in ("amazon", "aws"):
                continue
            if kind == "code_identifier" and "_" not in token and all(len(p) == 1 for p in token.split(".")):
                continue  # "e.g", "i.e": abbreviations
            if kind == "code_identifier" and _API_ACTION_RE.fullmatch(token):
                continue
            if kind == "number" and not (m.group("unit") or m.group("pct")):
                value = m.group("value")
                if "." not in value and "," not in value and int(value) < 10:
                    continue
            found.append(FactualToken(token, kind, start, end))
    return found


def _resolve(found: list[FactualToken]) -> list[FactualToken]:
    priority = {k: i for i, k in enumerate(KINDS)}
    found.sort(key=lambda t: (t.start, -(t.end - t.start), priority[t.kind]))
    kept: list[FactualToken] = []
    last_end = -1
    for token in found:
        if token.start >= last_end:
            kept.append(token)
            last_end = token.end
    return kept


# ---------------------------------------------------------------------------------------------- support


def service_key(name: str) -> str:
    """A service name compared case-insensitively with whitespace collapsed: ``amazon s3``."""
    return " ".join(name.lower().split())


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number's value in its dimension's base unit: bytes, seconds, percent, a count noun or none."""

    value: Decimal
    dimension: str
    """``"bytes"``, ``"seconds"``, ``"%"``, the singular count noun (``"bucket"``) or ``""`` (bare)."""


def quantity(token_text: str) -> Quantity | None:
    """The value of a number token, units normalised, thousands separators ignored.

    Example
    -------
    >>> quantity("5 TB") == quantity("5120 GB"), quantity("3,500").value, quantity("100 buckets").dimension
    (True, Decimal('3500'), 'bucket')
    """
    m = _PATTERNS["number"].fullmatch(token_text.strip())
    if m is None:
        return None
    try:
        value = Decimal(m.group("value").replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern only admits digits
        return None
    if m.group("pct"):
        return Quantity(value, "%")
    unit = " ".join((m.group("unit") or "").lower().split())
    if not unit:
        return Quantity(value, "")
    singular = _singular(unit)
    if singular in _SIZE:
        return Quantity(value * _SIZE[singular], "bytes")
    if singular in _TIME:
        return Quantity(value * _TIME[singular], "seconds")
    if singular == "percent":
        return Quantity(value, "%")
    return Quantity(value, singular)


_IRREGULAR = {"policies": "policy", "entries": "entry", "retries": "retry", "copies": "copy", "prefixes": "prefix"}


def _singular(unit: str) -> str:
    """The unit's key in the unit tables: ``"buckets"`` → ``"bucket"``, ``"KB"`` → ``"kb"``."""
    known = {*_SIZE, *_TIME, "percent", *_COUNT_NOUNS}
    if unit in _IRREGULAR:
        return _IRREGULAR[unit]
    if unit in known:
        return unit
    for suffix in ("es", "s"):
        if unit.endswith(suffix) and unit[: -len(suffix)] in known:
            return unit[: -len(suffix)]
    return unit


class _Haystack:
    """The sources prepared once for many support checks."""

    def __init__(self, sources: Sequence[str]) -> None:
        # A private-use separator: no pattern can match across two sources.
        self.text = "\n\ue000\n".join(sources)
        self.folded = service_key(self.text)
        self.collapsed = " ".join(self.text.split())
        numbers = list(_PATTERNS["number"].finditer(self.text))
        self.quantities = {q for m in numbers if (q := quantity(m.group(0))) is not None}
        # A bare generated number is supported by any source number of that value, unit or not.
        self.values = {Decimal(m.group("value").replace(",", "")) for m in numbers}

    def supports(self, token: FactualToken) -> bool:
        kind = token.kind
        if kind == "number":
            q = quantity(token.text)
            if q is None:
                return False
            if q.dimension == "":
                return q.value in self.values
            return q in self.quantities
        if kind == "service":
            return _occurs(service_key(token.text), self.folded, r"[\w]")
        if kind == "cli_command":
            return _occurs(" ".join(token.text.split()), self.collapsed, r"[\w-]")
        if kind in ("url", "arn"):
            return token.text in self.text
        if kind == "cli_flag":
            return _occurs(token.text, self.text, r"[\w-]")
        return _occurs(token.text, self.text, r"\w")  # api_action, code_identifier: exact


def _occurs(needle: str, haystack: str, word: str) -> bool:
    """``needle`` occurs in ``haystack`` with no ``word`` character glued to either end."""
    if not needle:
        return False
    return re.search(rf"(?<!{word}){re.escape(needle)}(?!{word})", haystack) is not None


def unsupported_tokens(generated: str, sources: Sequence[str]) -> list[FactualToken]:
    """The factual tokens of ``generated`` that no source supports.

    A token is *supported* when it occurs in some source, compared per kind:

    * ``service``: case-insensitively, whitespace collapsed, as whole words (``amazon s3`` occurs in
      "... in Amazon S3 Glacier" but ``amazon s3 glacierx`` does not);
    * ``api_action``, ``code_identifier``, ``cli_flag``: exactly (case-sensitive), not glued to other
      identifier characters (``PutObject`` is supported by ``s3:PutObject``, not by ``PutObjectAcl``);
    * ``cli_command``: exactly, whitespace collapsed; ``url`` and ``arn``: exact substrings;
    * ``number``: by value, thousands separators ignored and units normalised (``5 TB`` = ``5120 GB``,
      ``15 minutes`` = ``900 seconds``, ``100 buckets`` = ``100 bucket``); a number with a unit needs a source
      number of the same value and dimension, a bare number any source number of that value.

    Example
    -------
    >>> [t.text for t in unsupported_tokens("Amazon S3 supports 7 TB objects", ["objects up to 5 TB in Amazon S3"])]
    ['7 TB']
    """
    tokens = factual_tokens(generated)
    if not tokens:
        return []
    haystack = _Haystack(sources)
    return [t for t in tokens if not haystack.supports(t)]


# ------------------------------------------------------------------------------------ hallucination rate


class KindTally(BaseModel):
    """Factual tokens of one kind and how many of them were unsupported."""

    model_config = ConfigDict(frozen=True)

    total: int = Field(ge=0)
    unsupported: int = Field(ge=0)


class HallucinationResult(BaseModel):
    """The hallucination rate over a set of (generated text, sources) pairs."""

    model_config = ConfigDict(frozen=True)

    factual_tokens: int = Field(ge=0)
    """Factual tokens in all generated texts."""
    unsupported: int = Field(ge=0)
    """Of those, the ones no source of their own pair supports."""
    rate: float | None
    """``unsupported / factual_tokens``; ``None`` when nothing factual was generated (lower is better)."""
    by_kind: dict[str, KindTally] = Field(default_factory=dict)
    examples: list[str] = Field(default_factory=list)
    """The first unsupported tokens in their generated context, ``…before [token] after…``."""


def hallucination_rate(pairs: Iterable[tuple[str, Sequence[str]]], *, max_examples: int = 20) -> HallucinationResult:
    """Share of the factual tokens of generated texts that their sources do not support.

    ``rate = Σ unsupported / Σ factual tokens`` over every pair (micro-average: a long answer weighs
    more than a short one, as each fact is one chance to be wrong); ``None`` when no factual token
    was generated at all, so "said nothing checkable" is never reported as "never wrong".

    Example
    -------
    >>> r = hallucination_rate([("Amazon S3 objects hold up to 7 TB.", ["Objects in Amazon S3 are up to 5 TB."])])
    >>> r.factual_tokens, r.unsupported, r.rate, r.examples
    (2, 1, 0.5, ['…Amazon S3 objects hold up to [7 TB].…'])
    """
    total = unsupported = 0
    kinds: dict[str, list[int]] = {}
    examples: list[str] = []
    for generated, sources in pairs:
        tokens = factual_tokens(generated)
        if not tokens:
            continue
        haystack = _Haystack(sources)
        for token in tokens:
            tally = kinds.setdefault(token.kind, [0, 0])
            tally[0] += 1
            total += 1
            if not haystack.supports(token):
                tally[1] += 1
                unsupported += 1
                if len(examples) < max_examples:
                    examples.append(_in_context(generated, token))
    return HallucinationResult(
        factual_tokens=total,
        unsupported=unsupported,
        rate=unsupported / total if total else None,
        by_kind={k: KindTally(total=v[0], unsupported=v[1]) for k, v in sorted(kinds.items())},
        examples=examples,
    )


def _in_context(text: str, token: FactualToken, width: int = 40) -> str:
    before = " ".join(text[max(0, token.start - width) : token.start].split())
    after = " ".join(text[token.end : token.end + width].split())
    sep_b = " " if before and text[token.start - 1 : token.start].isspace() else ""
    sep_a = " " if after and text[token.end : token.end + 1].isspace() else ""
    return f"…{before}{sep_b}[{token.text}]{sep_a}{after}…"


# ------------------------------------------------------------------------------------- domain vocabulary

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[_-][A-Za-z0-9]+)*")


def vocabulary_words(text: str) -> list[str]:
    """The word tokens the domain-vocabulary score counts, lowercased, in order.

    A word token is a run of letters and digits starting with a letter, possibly joined by ``_`` or
    ``-`` (``bucket``, ``s3api``, ``max_keys``, ``put-object``, ``x-amz-date``), at least 3 characters
    long; shorter ones (``a``, ``to``, ``s3``) are too common to tell a domain apart.

    Example
    -------
    >>> vocabulary_words("Use aws s3api put-object --bucket DOC-EXAMPLE-BUCKET to upload.")
    ['use', 'aws', 's3api', 'put-object', 'bucket', 'doc-example-bucket', 'upload']
    """
    return [w.lower() for w in _WORD.findall(text) if len(w) >= 3]


class DomainVocabulary(BaseModel):
    """The word types of the training split (see :func:`vocabulary_words`): compact, JSON-able, picklable."""

    model_config = ConfigDict(frozen=True)

    words: tuple[str, ...]
    """Sorted word types."""
    max_types: int = Field(gt=0)
    truncated: bool = False
    """Whether rarer types were dropped to stay under ``max_types``."""
    _set: frozenset[str] | None = PrivateAttr(default=None)

    def __contains__(self, word: object) -> bool:
        if self._set is None:
            self._set = frozenset(self.words)
        return word in self._set

    def __len__(self) -> int:
        return len(self.words)


def domain_vocabulary(texts: Iterable[str], *, max_types: int = 200_000) -> DomainVocabulary:
    """The vocabulary of ``texts``: every word type, or the ``max_types`` most frequent ones.

    Memory stays bounded: when the running count holds more than ``2 × max_types`` types, only the
    ``max_types`` most frequent (ties broken alphabetically) are kept, so a type first seen late
    and rarely may be dropped; ``truncated`` then says so. Deterministic for the same input order.

    Example
    -------
    >>> v = domain_vocabulary(["Amazon S3 stores objects in buckets."])
    >>> "buckets" in v, "s3" in v, v.words
    (True, False, ('amazon', 'buckets', 'objects', 'stores'))
    """
    counts: Counter[str] = Counter()
    truncated = False

    def prune() -> None:
        nonlocal counts, truncated
        keep = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_types]
        truncated = truncated or len(keep) < len(counts)
        counts = Counter(dict(keep))

    for text in texts:
        counts.update(vocabulary_words(text))
        if len(counts) > 2 * max_types:
            prune()
    if len(counts) > max_types:
        prune()
    return DomainVocabulary(words=tuple(sorted(counts)), max_types=max_types, truncated=truncated)


def domain_vocab_score(generated_texts: Iterable[str], vocab: DomainVocabulary) -> float | None:
    """Share of the generated word tokens (:func:`vocabulary_words`, every occurrence) that are in ``vocab``.

    1.0 means every word the model produced was seen in the training split; invented words,
    misspellings and vocabulary of another domain lower it. ``None`` when there are no word tokens.

    Example
    -------
    >>> domain_vocab_score(["stores buckets flurbs"], domain_vocabulary(["Amazon S3 stores objects in buckets."]))
    0.6666666666666666
    """
    total = known = 0
    for text in generated_texts:
        for word in vocabulary_words(text):
            total += 1
            known += word in vocab
    return known / total if total else None
