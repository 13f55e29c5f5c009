"""The scheduled canary's questions and how its answers are scored (pure: no I/O, no platform).

Every few minutes the canary (:mod:`docllm.service_layer.canary`) asks a fixed set of questions
through the answer path of ``POST /v1/ask``, against the live model, and publishes the share it got
right as ``CanaryAccuracy``. An item says what a right outcome is:

``expect: "answer"``
    the documentation covers the question: right when the answer does **not** abstain and cites at
    least one of the item's ``doc_keys`` (the pages that answer it);
``expect: "abstain"``
    the documentation does not cover it: right when the answer abstains.

A request that fails (the engine unavailable, a timeout, anything raised) is wrong: a canary that
cannot get an answer is exactly what the alarm must see.

Where the questions come from, the first that exists:

1. **The operator's set**: ``benchmarks/canary.jsonl`` in the raw bucket (:data:`CANARY_SET_KEY`;
   format in docs/canary.md, parsed by :func:`parse_canary_set`). It is under ``benchmarks/``
   because that prefix is never ingested: the questions' answers must not become documents.
2. **The default set**, built from the deployed model's dataset version by :func:`default_items`:
   questions made by the answer-tuning rules (:func:`docllm.answers.tuning.chunk_candidates`: the
   question forms the answer path is tuned on) from the documents the evaluation held out (the test
   split, else validation, else train for a dataset too small to hold any out), each expecting its
   own document to be cited; plus :data:`NOT_COVERED_QUESTIONS`, about topics no technical
   documentation covers, each expecting an abstention. Deterministic: the same dataset version and
   index give the same questions, in the same order, on every host.

Example
-------
>>> item = CanaryItem(question="What is a good recipe for banana bread?", expect="abstain")
>>> score(item, abstained=True, cited=[], model_version="v1").correct
True
>>> tally([score(item, abstained=False, cited=["s3/a.md"], model_version="v1")]).accuracy
0.0
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from docllm.answers.models import AskRequest
from docllm.dataset.versions import DatasetDocument, Split, SplitRecord
from docllm.exceptions import PermanentError

CANARY_SET_KEY = "benchmarks/canary.jsonl"
"""The operator's question set, in the raw bucket (under the prefix nothing ingests)."""
MAX_ITEMS = 200
"""Questions in a set at most: every one is asked every run, against the live model."""
DEFAULT_MAX_ANSWERABLE = 20
"""Covered questions in the default set at most."""
DEFAULT_MAX_PER_DOCUMENT = 2
"""Covered questions from one document at most, so a long page cannot fill the set."""
DEFAULT_SPLITS: tuple[Split, ...] = ("test", "validation", "train")
"""Splits the default set draws from, the first with documents: held out first (docstring)."""
SET_RULES_VERSION = 1
"""Bump when :func:`default_items` would build another set from the same inputs (cached sets are keyed by it)."""

NOT_COVERED_QUESTIONS: tuple[str, ...] = (
    "What is a good recipe for banana bread?",
    "How long should I boil an egg for a soft yolk?",
    "Which football team won the 1998 World Cup?",
    "How often should I water tomato seedlings?",
)
"""Questions no technical documentation answers: the default set expects an abstention for each."""

Expect = Literal["answer", "abstain"]


class CanarySetError(PermanentError):
    """The operator's canary set cannot be read: names the line and what is wrong with it."""

    def __init__(self, message: str, *, line: int | None = None, key: str = CANARY_SET_KEY) -> None:
        super().__init__(f"{key}{f':{line}' if line is not None else ''}: {message}")
        self.line = line


def item_id(question: str, expect: str, doc_keys: Sequence[str]) -> str:
    """Stable id of an item: a hash of what it asks and expects."""
    blob = "\x00".join((question, expect, *sorted(doc_keys)))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class CanaryItem(BaseModel):
    """One canary question and what a right outcome is (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(description="asked as POST /v1/ask's question (same rules: 1..2000 characters)")
    expect: Expect = Field(description='"answer": covered, must cite one of doc_keys; "abstain": not covered')
    doc_keys: list[str] = Field(default_factory=list, description="pages that answer it (expect answer only)")
    service: str | None = Field(default=None, description="ask within this service only, as /v1/ask's service")
    id: str = Field(default="", max_length=128, description="yours; default: a hash of question, expect, doc_keys")
    rule: str | None = Field(default=None, description="default set: the rule that made it (or not_covered)")

    @model_validator(mode="after")
    def _check(self) -> Self:
        # The question and service follow /v1/ask's own rules: a canary asks what a client could.
        request = AskRequest(question=self.question, service=self.service)
        if self.expect == "answer" and not self.doc_keys:
            raise ValueError('expect "answer" needs doc_keys: the pages whose citation makes the answer right')
        if self.expect == "abstain" and self.doc_keys:
            raise ValueError('expect "abstain" takes no doc_keys: nothing may be cited')
        if any(not k.strip() for k in self.doc_keys):
            raise ValueError("doc_keys holds an empty key")
        object.__setattr__(self, "question", request.question)
        if not self.id:
            object.__setattr__(self, "id", item_id(self.question, self.expect, self.doc_keys))
        return self


def parse_canary_set(data: bytes, *, key: str = CANARY_SET_KEY) -> list[CanaryItem]:
    """The operator's set: one JSON object per line (blank lines skipped), at most :data:`MAX_ITEMS`.

    Raises
    ------
    CanarySetError
        Not UTF-8, a line that is not a valid item (with its 1-based number), a repeated id, no
        question at all, or too many.

    Examples
    --------
    >>> lines = [b'{"question": "How do I enable versioning?", "expect": "answer", "doc_keys": ["s3/V.md"]}',
    ...          b'{"question": "What is a good recipe for banana bread?", "expect": "abstain"}']
    >>> [(i.expect, i.doc_keys) for i in parse_canary_set(b"\\n".join(lines))]
    [('answer', ['s3/V.md']), ('abstain', [])]
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CanarySetError(f"not UTF-8: {e}", key=key) from e
    items: list[CanaryItem] = []
    ids: dict[str, int] = {}
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise CanarySetError(f"not JSON: {e.msg}", line=no, key=key) from e
        if not isinstance(raw, dict):
            raise CanarySetError(f"a JSON {type(raw).__name__}, not an object", line=no, key=key)
        try:
            item = CanaryItem.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in err['loc']) or 'item'}: {err['msg']}" for err in e.errors()
            )
            raise CanarySetError(problems, line=no, key=key) from e
        if item.id in ids:
            raise CanarySetError(f"id {item.id!r} repeats line {ids[item.id]}", line=no, key=key)
        ids[item.id] = no
        items.append(item)
        if len(items) > MAX_ITEMS:
            raise CanarySetError(f"more than {MAX_ITEMS} questions: each is asked on every run", line=no, key=key)
    if not items:
        raise CanarySetError("no questions", key=key)
    return items


def _rank(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()[:8], "big")


def pick_documents(doc_keys: Iterable[str], *, indexed: Collection[str] | None, limit: int) -> list[str]:
    """The documents the default set draws from: those the index holds (all when ``indexed`` is None),
    at most ``limit``, chosen by a hash of the key (a uniform sample, the same on every host).

    >>> pick_documents(["a.md", "b.md", "c.md"], indexed={"a.md", "c.md"}, limit=5)
    ['a.md', 'c.md']
    """
    keys = sorted({k for k in doc_keys if indexed is None or k in indexed}, key=lambda k: (_rank("doc", k), k))
    return sorted(keys[:limit])


def default_items(
    records: Iterable[SplitRecord],
    *,
    indexed: Collection[str] | None = None,
    max_answerable: int = DEFAULT_MAX_ANSWERABLE,
    max_per_document: int = DEFAULT_MAX_PER_DOCUMENT,
    not_covered: Sequence[str] = NOT_COVERED_QUESTIONS,
) -> list[CanaryItem]:
    """The default set from a split's records (documents contiguous, chunks in order; module docstring).

    Covered questions come from :func:`docllm.answers.tuning.chunk_candidates` over each chunk (with its
    heading path rebuilt), each expecting its own document cited; a document the index does not hold
    (``indexed`` given) gives none, since no answer could cite it. Choice: per document, the
    ``max_per_document`` candidates of lowest hash rank, then overall the ``max_answerable`` of lowest
    rank, in rank order; then the ``not_covered`` questions.

    Example
    -------
    >>> recs = [SplitRecord(chunk_id="c1", doc_key="s3/v.md",
    ...         text="# Versioning\\n\\nA bucket is a container for objects stored in Amazon S3.")]
    >>> [(i.expect, i.question) for i in default_items(recs, not_covered=["Banana bread?"])]
    [('answer', 'What should I know about versioning?'), ('answer', 'What is a bucket?'), ('abstain', 'Banana bread?')]
    """
    from docllm.answers.tuning import AnswerTuning, chunk_candidates, source_chunks

    settings = AnswerTuning()
    per_doc: dict[str, list[tuple[int, CanaryItem]]] = defaultdict(list)
    for chunk in source_chunks(records):
        if indexed is not None and chunk.doc_key not in indexed:
            continue
        for cand in chunk_candidates(chunk, settings, max_answer_chars=settings.max_answer_chars):
            try:
                item = CanaryItem(question=cand.question, expect="answer", doc_keys=[chunk.doc_key], rule=cand.rule)
            except ValidationError:  # a question /v1/ask would refuse (too long): not a canary question
                continue
            per_doc[chunk.doc_key].append((_rank(chunk.doc_key, cand.rule, cand.question), item))
    chosen: list[tuple[int, CanaryItem]] = []
    for key in sorted(per_doc):
        seen: set[str] = set()
        for rank, item in sorted(per_doc[key], key=lambda x: (x[0], x[1].id)):
            if item.id not in seen and len(seen) < max_per_document:
                seen.add(item.id)
                chosen.append((rank, item))
    chosen.sort(key=lambda x: (x[0], x[1].id))
    answerable = [item for _, item in chosen[:max_answerable]]
    abstain = [CanaryItem(question=q, expect="abstain", rule="not_covered") for q in not_covered]
    return answerable + abstain


# ------------------------------------------------------------------------------------------- scoring


class ItemResult(BaseModel):
    """How one canary question went."""

    id: str
    question: str
    expect: Expect
    correct: bool
    abstained: bool | None = Field(description="None when the request failed")
    reason: str | None = Field(default=None, description="the abstention's reason")
    cited: list[str] = Field(default_factory=list, description="documents the answer cited")
    model_version: str | None = Field(default=None, description="the version that answered (None: failed)")
    error: str | None = Field(default=None, description='"ExceptionType: message" when the request failed')
    latency_ms: float | None = None


def score(
    item: CanaryItem,
    *,
    abstained: bool | None,
    cited: Sequence[str],
    model_version: str | None,
    reason: str | None = None,
    error: str | None = None,
    latency_ms: float | None = None,
) -> ItemResult:
    """Score one outcome (module docstring): an error is wrong whatever was expected.

    >>> item = CanaryItem(question="How do I enable versioning?", expect="answer", doc_keys=["s3/V.md"])
    >>> score(item, abstained=False, cited=["s3/other.md", "s3/V.md"], model_version="v1").correct
    True
    >>> score(item, abstained=None, cited=[], model_version=None, error="EngineUnavailableError: down").correct
    False
    """
    if error is not None or abstained is None:
        correct = False
    elif item.expect == "abstain":
        correct = abstained
    else:
        correct = not abstained and bool(set(cited) & set(item.doc_keys))
    return ItemResult(
        id=item.id,
        question=item.question,
        expect=item.expect,
        correct=correct,
        abstained=None if error is not None else abstained,
        reason=reason,
        cited=list(dict.fromkeys(cited)),
        model_version=model_version,
        error=error,
        latency_ms=latency_ms,
    )


class Tally(BaseModel):
    """Right answers over questions asked."""

    questions: int = 0
    correct: int = 0
    errors: int = 0

    @property
    def accuracy(self) -> float | None:
        """Percent right; None when nothing was asked (no datapoint, never a 0 an alarm would act on)."""
        return round(100.0 * self.correct / self.questions, 3) if self.questions else None


def tally(results: Iterable[ItemResult]) -> Tally:
    out = Tally()
    for r in results:
        out.questions += 1
        out.correct += r.correct
        out.errors += r.error is not None
    return out


def tally_by_version(results: Iterable[ItemResult], *, sole_version: str | None) -> dict[str, Tally]:
    """Each answering version's tally. A failed request names no version: it counts against
    ``sole_version`` when one version serves all traffic, else (a canary split) only in the target's total.

    >>> ok = ItemResult(id="a", question="q", expect="abstain", correct=True, abstained=True, model_version="v2")
    >>> bad = ItemResult(id="b", question="q", expect="abstain", correct=False, abstained=None, error="E: x")
    >>> {v: (t.questions, t.correct) for v, t in tally_by_version([ok, bad], sole_version="v2").items()}
    {'v2': (2, 1)}
    >>> {v: (t.questions, t.correct) for v, t in tally_by_version([ok, bad], sole_version=None).items()}
    {'v2': (1, 1)}
    """
    grouped: dict[str, list[ItemResult]] = defaultdict(list)
    for r in results:
        version = r.model_version or sole_version
        if version:
            grouped[version].append(r)
    return {v: tally(rs) for v, rs in sorted(grouped.items())}


def service_mix(services: Iterable[str | None]) -> dict[str, int]:
    """How many of each service (None and empty skipped), keys sorted.

    >>> service_mix(["s3", "iam", "s3", None])
    {'iam': 1, 's3': 2}
    """
    counts: dict[str, int] = defaultdict(int)
    for s in services:
        if s:
            counts[s] += 1
    return dict(sorted(counts.items()))


def split_service_mix(documents: Iterable[DatasetDocument], split: str = "train") -> dict[str, int]:
    """Documents per service in one split of a dataset version (its manifest's ``documents``): the
    reference mix live questions are compared with (``DriftServiceShift``).

    >>> docs = [DatasetDocument(doc_key=k, sha256="0", service=s, split=sp, chunk_ids=[], token_estimate=0)
    ...         for k, s, sp in [("a", "s3", "train"), ("b", "iam", "test"), ("c", "s3", "train")]]
    >>> split_service_mix(docs)
    {'s3': 2}
    """
    return service_mix(d.service for d in documents if d.split == split)


__all__ = [
    "CANARY_SET_KEY",
    "DEFAULT_MAX_ANSWERABLE",
    "DEFAULT_MAX_PER_DOCUMENT",
    "DEFAULT_SPLITS",
    "MAX_ITEMS",
    "NOT_COVERED_QUESTIONS",
    "SET_RULES_VERSION",
    "CanaryItem",
    "CanarySetError",
    "ItemResult",
    "Tally",
    "default_items",
    "item_id",
    "parse_canary_set",
    "pick_documents",
    "score",
    "service_mix",
    "split_service_mix",
    "tally",
    "tally_by_version",
]
