"""Answer-tuning examples: (context, question, answer) built from a dataset's training split by rules.

A model pretrained on documentation continues text; it has not learnt to answer *from a context*.
These examples teach it, in exactly the layout it is asked in at serving time: the prompt is built by
:func:`docllm.answers.prompt.build_prompt` (so passages are numbered, headed and cut to the context
budget as :mod:`docllm.answers.service` cuts them), the answer follows the ``### Answer:`` marker
and the example ends there (the shards add EOS, where the engine stops). Pure: no tokenizer, no I/O;
the shards job (:mod:`docllm.jobs.shards_job`) encodes and mixes them, and the LoRA path will read
the same :class:`TuningExample` objects.

Training split only. The builder is given the records of ``train.jsonl``; questions, answers and
distractors all come from them, so the validation and test documents the evaluation holds out stay
unseen (the shards job never passes another split).

Rules (:data:`RULES`). Every answer is a verbatim span of its chunk, so the model learns to *copy*
from the context, identifiers and numbers included; ``expected`` is the part an answer must contain
to be right (what the copy-rate measurement checks).

``heading``
    A heading followed by prose: "How do I go about enabling versioning on buckets?" (a heading that
    starts with a gerund) or "What does the documentation say about bucket naming rules?"; a short
    sub-heading names its parent in brackets. Answer: the section's first sentences.
``definition``
    "X is a/an/the …" / "X are …" with a noun-phrase subject (not "This", "It", …): "What is X?".
    Answer: the sentence.
``procedure``
    A bold procedure title ``**To enable versioning on a bucket**`` over numbered steps: "How do I
    enable versioning on a bucket?", answer: the steps; or a sentence "To do X, …": "How do I do X?",
    answer: the sentence.
``identifier``
    "The following example enables …" over a short code block: "Which command enables …?", answer:
    the command; or a sentence with an inline code identifier, asked back with the identifier
    replaced by "what" ("… you set the status value to what?"), answer: the sentence.
``limit``
    A sentence with a number and a unit near a limit word ("up to", "maximum", "between" …), asked
    back with the number replaced by "how many": "You can create up to how many buckets …?".

Choices are deterministic: every "random" pick is a hash of the example's identity
(:func:`_rank`), so the same dataset gives the same examples on every host and every run.

Selection. Candidates are ranked by hash; a document gives at most ``max_per_document`` and the run
at most ``max_examples`` (the lowest ranks, so a cap drops a uniform sample, not the end of the
alphabet). The source is read twice (candidates, then the chunks the chosen examples need), so
memory holds the selected examples, not the corpus.

Context. The chunk holding the answer, plus 0 to ``distractors`` chunks of *other* documents
(how many, which, and where the answer chunk sits among them: hashes). The prompt budget is the
serving one, :func:`~docllm.answers.prompt.budget_for` the family's context less the answer;
when the cut leaves the answer out of the prompt, the answer chunk is moved first and, if the
answer still does not fit, the example is dropped.

Example
-------
>>> from docllm.dataset.versions import SplitRecord
>>> recs = [SplitRecord(chunk_id="c1", doc_key="s3/v.md",
...         text="# Versioning\\n\\nA bucket is a container for objects stored in Amazon S3.")]
>>> ex = build_examples(lambda: recs, AnswerTuning(distractors=0), context_length=256)
>>> sorted((e.rule, e.question) for e in ex)
[('definition', 'What is a bucket?'), ('heading', 'What should I know about versioning?')]
>>> print(next(e for e in ex if e.rule == "definition").text[-64:])
Answer:
A bucket is a container for objects stored in Amazon S3.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from docllm.answers.prompt import BYTES_PER_TOKEN, budget_for, build_prompt, estimate_tokens
from docllm.answers.retrieve import DocumentContext, Retrieval, RetrievedChunk
from docllm.dataset.versions import SplitRecord

RuleName = Literal["heading", "definition", "procedure", "identifier", "limit"]
RULES: tuple[RuleName, ...] = ("heading", "definition", "procedure", "identifier", "limit")
RULES_VERSION = 1
"""Bump when a rule changes what it produces: it is part of the shards' cache key (:meth:`AnswerTuning.tag`)."""

#: Guides of the Markdown corpora, which do not name their guide (as ingestion's defaults); the
#: split files hold no heading path, so the builder rebuilds it from the guide and the chunk's headings.
GUIDES = {
    "s3": "Amazon S3 User Guide",
    "iam": "IAM User Guide",
    "lambda": "AWS Lambda Developer Guide",
    "sagemaker": "Amazon SageMaker Developer Guide",
    "cloudwatch": "Amazon CloudWatch User Guide",
    "ec2": "Amazon EC2 User Guide",
}


class AnswerTuning(BaseModel):
    """A family's answer-tuning setting (``answer_tuning:`` in ``families.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(default=0.2, gt=0, lt=1, description="share of the training tokens from examples")
    max_examples: int = Field(default=20_000, ge=1, le=2_000_000, description="examples built at most")
    max_per_document: int = Field(default=8, ge=1, le=1000, description="examples from one document at most")
    distractors: int = Field(default=2, ge=0, le=2, description="other documents' chunks in a context, at most")
    max_answer_chars: int = Field(default=320, ge=40, le=4000, description="longest answer, in characters")
    rules: tuple[RuleName, ...] = Field(default=RULES, min_length=1, description="rules used (module docstring)")

    def tag(self, context_length: int) -> str:
        """The settings' share of a cache key: shards built with other settings, another context
        length or another version of the rules are other shards.

        >>> AnswerTuning().tag(256) == AnswerTuning().tag(256) != AnswerTuning(share=0.3).tag(256)
        True
        """
        blob = json.dumps(
            {"settings": self.model_dump(mode="json"), "context_length": context_length, "rules": RULES_VERSION},
            sort_keys=True,
        )
        return "at-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


class TuningExample(BaseModel):
    """One answer-tuning example: the serving prompt, the answer, and where they came from."""

    rule: RuleName
    question: str
    answer: str
    expected: str = Field(description="what a right answer contains (an identifier, a number, a phrase)")
    prompt: str = Field(description="the serving prompt (answers.prompt.build_prompt) over the context")
    doc_key: str
    chunk_id: str
    distractors: list[str] = Field(default_factory=list, description="chunk ids of the other documents' chunks")

    @property
    def text(self) -> str:
        """What is trained on: the prompt, then the answer (the shards add EOS after it)."""
        return self.prompt + self.answer


# --------------------------------------------------------------------------- source chunks


@dataclass(frozen=True)
class SourceChunk:
    """A split record with the heading path the split file does not store, rebuilt from its headings."""

    doc_key: str
    chunk_id: str
    text: str
    heading_path: tuple[str, ...]

    def retrieved(self) -> RetrievedChunk:
        title = self.heading_path[1] if len(self.heading_path) > 1 else (self.heading_path or ("",))[0]
        return RetrievedChunk(
            chunk_id=self.chunk_id,
            doc_key=self.doc_key,
            version_id=None,
            service=self.doc_key.split("/", 1)[0],
            title=title,
            heading_path=list(self.heading_path),
            text=self.text,
            score=1.0,
        )


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def source_chunks(records: Iterable[SplitRecord]) -> Iterator[SourceChunk]:
    """Chunks with their heading paths: the guide, then the document's open headings (as ingestion's
    breadcrumb: a chunk that opens with headings carries them)."""
    doc_key: str | None = None
    stack: list[tuple[int, str]] = []
    for r in records:
        if r.doc_key != doc_key:
            doc_key, stack = r.doc_key, []
        path: tuple[str, ...] | None = None
        in_code = False
        for line in r.text.split("\n"):
            if _FENCE.match(line):
                in_code = not in_code
            m = None if in_code else _HEADING.match(line)
            if m:
                level = len(m.group(1))
                stack = [h for h in stack if h[0] < level] + [(level, m.group(2))]
            elif line.strip() and path is None:
                path = _path(r.doc_key, stack)
        yield SourceChunk(r.doc_key, r.chunk_id, r.text, path if path is not None else _path(r.doc_key, stack))


def _path(doc_key: str, stack: list[tuple[int, str]]) -> tuple[str, ...]:
    guide = GUIDES.get(doc_key.split("/", 1)[0])
    return ((guide,) if guide else ()) + tuple(t for _, t in stack)


# --------------------------------------------------------------------------- blocks and sentences


@dataclass
class _Block:
    kind: Literal["heading", "text", "list", "code"]
    text: str
    level: int = 0
    lines: list[str] = field(default_factory=list)


def _blocks(text: str) -> list[_Block]:
    """The chunk's Markdown blocks: headings, fenced code, list runs, prose paragraphs."""
    out: list[_Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if _FENCE.match(line):
            j = i + 1
            while j < len(lines) and not _FENCE.match(lines[j]):
                j += 1
            body = lines[i + 1 : j]
            out.append(_Block("code", "\n".join(body), lines=body))
            i = j + 1
            continue
        m = _HEADING.match(line)
        if m:
            out.append(_Block("heading", m.group(2), level=len(m.group(1))))
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].strip() and not _FENCE.match(lines[j]) and not _HEADING.match(lines[j]):
            j += 1
        para = lines[i:j]
        kind: Literal["text", "list"] = "list" if _LIST_ITEM.match(para[0]) else "text"
        out.append(_Block(kind, "\n".join(para), lines=para))
        i = j
    return out


_LIST_ITEM = re.compile(r"^\s*(?:\d+\.|[-*+])\s+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`*\[(\"'])")


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(" ".join(paragraph.split())) if s.strip()]


def _plain(text: str) -> str:
    """Question text: links to their words, no emphasis or backticks, one line."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\*+([^*]+)\*+", r"\1", text).replace("`", "")
    return " ".join(text.split())


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class _Candidate:
    rule: RuleName
    question: str
    answer: str
    expected: str


_GERUND_OR_ARTICLE = re.compile(r"^(?:[A-Z][a-z]+ing|The|A|An)\b")
_GERUND = re.compile(r"^[A-Z][a-z]+ing\s+\S")
_NOUNS_IN_ING = frozenset({"Pricing", "Billing", "Networking", "Versioning", "Licensing", "Logging", "Tagging"})
_HEADING_TEMPLATES = ("What does the documentation say about {h}?", "What should I know about {h}?")


def _lower_first(h: str) -> str:
    return h[0].lower() + h[1:] if _GERUND_OR_ARTICLE.match(h) else h


def _heading_rule(blocks: list[_Block], path: tuple[str, ...], limit: int) -> Iterator[_Candidate]:
    for a, b in itertools.pairwise(blocks):
        if a.kind != "heading" or b.kind != "text" or b.text.startswith("**"):
            continue
        heading = _plain(a.text)
        if len(heading) < 3 or len(heading) > 100:
            continue
        answer = _first_sentences(b.text, limit)
        if not answer:
            continue
        topic = _lower_first(heading)
        parents = [p for p in path if p != a.text]
        if len(heading.split()) <= 4 and len(parents) >= 2:
            topic += f" ({_plain(parents[-1])})"
        if _GERUND.match(heading) and heading.split()[0] not in _NOUNS_IN_ING:
            question = f"How do I go about {topic}?"
        else:
            question = _HEADING_TEMPLATES[_rank("heading", heading) % len(_HEADING_TEMPLATES)].format(h=topic)
        yield _Candidate("heading", question, answer, " ".join(answer.split()[:6]))


def _first_sentences(paragraph: str, limit: int) -> str:
    """The paragraph's first sentences within ``limit`` characters, verbatim (a span of the chunk)."""
    sentences = _SENTENCE.split(paragraph.strip())
    out = ""
    for s in sentences:
        candidate = f"{out} {s}" if out else s
        if len(candidate) > limit:
            break
        out = candidate
    # Only a span of the chunk counts: a paragraph whose sentences were split across lines is not one.
    return out if out and out in paragraph else ""


_DEFINITION = re.compile(
    r"^(?P<subj>(?:(?:An?|The)\s+)?[A-Z`][^,;:()]{1,60}?)\s+(?P<verb>is|are)\s+"
    r"(?P<rest>(?:an?|the|one of)\s.{10,})[.]$"
)
# fmt: off
_NOT_SUBJECTS = frozenset({
    "this", "that", "these", "those", "it", "there", "here", "you", "we", "they", "each", "which", "what",
    "some", "any", "all", "its", "your", "our", "if", "when", "following", "such", "both", "one",
})
# fmt: on


def _definition_rule(sentences: list[str], limit: int) -> Iterator[_Candidate]:
    for s in sentences:
        m = _DEFINITION.match(s)
        if not m or len(s) > limit:
            continue
        subj = m.group("subj")
        words = subj.split()
        if len(words) > 6 or words[0].lower() in _NOT_SUBJECTS:
            continue
        if words[0] in ("A", "An", "The"):
            subj = words[0].lower() + subj[len(words[0]) :]
        yield _Candidate(
            "definition", f"What {m.group('verb')} {_plain(subj)}?", s, " ".join(m.group("rest").split()[:4])
        )


_TO_SENTENCE = re.compile(r"^To (?P<goal>[a-z][^,]{5,120}), (?P<rest>.{10,})$")
_VAGUE_GOALS = re.compile(r"^(?:do (?:this|so|that)|learn|see|find out|get started|help|use this|read)\b")
_PROCEDURE_TITLE = re.compile(r"^\*\*To (?P<goal>[a-z][^*]{5,150})\*\*$")


def _procedure_rule(blocks: list[_Block], limit: int) -> Iterator[_Candidate]:
    for a, b in itertools.pairwise(blocks):
        m = _PROCEDURE_TITLE.match(a.text.strip()) if a.kind == "text" else None
        if m and b.kind == "list":
            steps = ""
            for line in b.lines:
                candidate = f"{steps}\n{line}" if steps else line
                if len(candidate) > limit:
                    break
                steps = candidate
            if steps:
                first = _LIST_ITEM.sub("", b.lines[0])
                yield _Candidate(
                    "procedure", f"How do I {_plain(m.group('goal'))}?", steps, " ".join(first.split()[:6])
                )
    for block in blocks:
        if block.kind != "text":
            continue
        for s in _sentences(block.text):
            m = _TO_SENTENCE.match(s)
            if m and len(s) <= limit and not _VAGUE_GOALS.match(m.group("goal")) and s in block.text:
                code = _CODE_SPAN.search(m.group("rest"))
                expected = code.group(1) if code else " ".join(m.group("rest").split()[:4])
                yield _Candidate("procedure", f"How do I {_plain(m.group('goal'))}?", s, expected)


_FOLLOWING = re.compile(r"^The following (?:example|command)s? (?P<verb>[a-z]+s) (?P<rest>.{5,150}?)[.:]$")
_CODE_SPAN = re.compile(r"`([^`\s]{3,80})`")


def _identifier_rule(blocks: list[_Block], limit: int) -> Iterator[_Candidate]:
    for a, b in itertools.pairwise(blocks):
        if a.kind != "text" or b.kind != "code":
            continue
        m = _FOLLOWING.match(a.text.strip())
        command = b.lines[0].strip() if b.lines else ""
        if m and 1 <= len(b.lines) <= 3 and 8 <= len(command) <= limit:
            question = f"Which command {m.group('verb')} {_plain(m.group('rest'))}?"
            yield _Candidate("identifier", question, command, command[:60])
    for block in blocks:
        if block.kind != "text":
            continue
        for s in _sentences(block.text):
            m = _CODE_SPAN.search(s)
            if not m or len(s) > limit or s not in block.text or len(s.split()) < 6:
                continue
            asked = _plain(s[: m.start()] + "what" + s[m.end() :]).rstrip(".:;!")
            yield _Candidate("identifier", asked + "?", s, m.group(1))


_UNITS = (
    r"characters?|bytes?|[KMGTP]i?B|seconds?|minutes?|hours?|days?|weeks?|months?|years?|percent|buckets?|"
    r"objects?|requests?|parts?|tags?|versions?|rules?|times|items?|keys?|users?|roles?|policies|groups?|"
    r"functions?|instances?|milliseconds?|ms|entries|attributes?|regions?|accounts?|concurrent"
)
_LIMIT_NUMBER = re.compile(rf"\b(?P<n>\d[\d,]*(?:\.\d+)?)(?P<sp>\s?)(?P<unit>{_UNITS})\b|\b(?P<pn>\d+(?:\.\d+)?)%")
_LIMIT_WORDS = re.compile(
    r"\b(?:up to|maximum|minimum|at least|at most|no more than|fewer than|more than|less than|between|limit|"
    r"cannot exceed|can't exceed|must not exceed|exceeds?|as many as|quota)\b",
    re.IGNORECASE,
)


def _limit_rule(sentences: list[str], limit: int) -> Iterator[_Candidate]:
    for s in sentences:
        if len(s) > limit or len(s.split()) < 6 or not _LIMIT_WORDS.search(s):
            continue
        m = _LIMIT_NUMBER.search(s)
        if not m:
            continue
        if m.group("pn"):
            asked, expected = s[: m.start()] + "what percentage" + s[m.end() :], m.group("pn") + "%"
        else:
            asked, expected = s[: m.start("n")] + "how many" + s[m.end("n") :], m.group("n")
        yield _Candidate("limit", _plain(asked).rstrip(".:;!") + "?", s, expected)


def chunk_candidates(chunk: SourceChunk, settings: AnswerTuning, *, max_answer_chars: int) -> list[_Candidate]:
    """Every candidate the rules find in one chunk (deduplicated by question)."""
    blocks = _blocks(chunk.text)
    sentences = [s for b in blocks if b.kind == "text" for s in _sentences(b.text) if s in b.text]
    found: list[_Candidate] = []
    for rule in settings.rules:
        if rule == "heading":
            found += _heading_rule(blocks, chunk.heading_path, max_answer_chars)
        elif rule == "definition":
            found += _definition_rule(sentences, max_answer_chars)
        elif rule == "procedure":
            found += _procedure_rule(blocks, max_answer_chars)
        elif rule == "identifier":
            found += _identifier_rule(blocks, max_answer_chars)
        else:
            found += _limit_rule(sentences, max_answer_chars)
    seen: set[str] = set()
    out = []
    for c in found:
        if c.question not in seen and c.expected and c.answer in chunk.text:
            seen.add(c.question)
            out.append(c)
    return out


# --------------------------------------------------------------------------- building


def _rank(*parts: str) -> int:
    """A deterministic pseudo-random number naming a choice (same inputs, same choice, every host)."""
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()[:8], "big")


def answer_chars(settings: AnswerTuning, context_length: int) -> int:
    """Longest answer for a context: ``max_answer_chars``, but at most a quarter of the context (estimated
    bytes), so a small model's context still holds the passage the answer comes from.

    >>> answer_chars(AnswerTuning(), 256), answer_chars(AnswerTuning(), 2048)
    (160, 320)
    """
    return max(40, min(settings.max_answer_chars, int(context_length * BYTES_PER_TOKEN / 4)))


@dataclass(frozen=True)
class _Chosen:
    rank: int
    doc: int
    chunk: int
    candidate: _Candidate


def build_examples(
    source: Callable[[], Iterable[SplitRecord]],
    settings: AnswerTuning,
    *,
    context_length: int,
    prompt_share: float = 1.0,
) -> list[TuningExample]:
    """The answer-tuning examples of a training split, in rank order (module docstring: the rules).

    Parameters
    ----------
    source
        Returns the training split's records, in file order (documents contiguous); called twice.
    settings
        The family's setting.
    context_length
        The model's context: prompts are budgeted for it as the serving prompt is.
    prompt_share
        Share of that budget to use: the budget is an estimate (2.5 bytes a token), and a tokenizer
        with a small vocabulary spends more tokens; the shards job asks again with a smaller share for
        the examples whose tokens overflow the context.
    """
    limit = answer_chars(settings, context_length)
    # Pass 1: candidates (ranked) and the shape of the corpus (chunks per document), for distractors.
    docs: list[int] = []
    chosen: list[_Chosen] = []
    doc_key = None
    per_doc: list[_Chosen] = []

    def close_document() -> None:
        per_doc.sort(key=lambda c: c.rank)
        chosen.extend(per_doc[: settings.max_per_document])
        per_doc.clear()

    for chunk in source_chunks(source()):
        if chunk.doc_key != doc_key:
            close_document()
            doc_key = chunk.doc_key
            docs.append(0)
        for cand in chunk_candidates(chunk, settings, max_answer_chars=limit):
            per_doc.append(_Chosen(_rank(chunk.chunk_id, cand.rule, cand.question), len(docs) - 1, docs[-1], cand))
        docs[-1] += 1
    close_document()
    chosen.sort(key=lambda c: c.rank)
    chosen = chosen[: settings.max_examples]
    if not chosen:
        return []

    # The distractors of each example: how many, from which other documents, which chunk of each.
    plans: list[list[tuple[int, int]]] = []
    for c in chosen:
        n = c.rank % (settings.distractors + 1) if len(docs) > 1 else 0
        plan: list[tuple[int, int]] = []
        for k in range(n):
            r = _rank(str(c.rank), "distractor", str(k))
            other = r % (len(docs) - 1)
            other += other >= c.doc  # never the answer's own document
            plan.append((other, (r >> 20) % docs[other]))
        plans.append(plan)

    # Pass 2: the chunks the examples need.
    needed = {(c.doc, c.chunk) for c in chosen} | {p for plan in plans for p in plan}
    chunks: dict[tuple[int, int], SourceChunk] = {}
    d, i, doc_key = -1, 0, None
    for chunk in source_chunks(source()):
        if chunk.doc_key != doc_key:
            d, i, doc_key = d + 1, 0, chunk.doc_key
        if (d, i) in needed:
            chunks[(d, i)] = chunk
        i += 1

    out = []
    for c, plan in zip(chosen, plans, strict=True):
        example = _render(c, chunks[(c.doc, c.chunk)], [chunks[p] for p in plan], context_length, prompt_share)
        if example is not None:
            out.append(example)
    return out


def _render(
    c: _Chosen, chunk: SourceChunk, distractors: list[SourceChunk], context_length: int, prompt_share: float
) -> TuningExample | None:
    """The example over its context, in the serving layout; None when the answer does not fit."""
    cand = c.candidate
    budget = budget_for(context_length, estimate_tokens(cand.answer), share=prompt_share)
    at = c.rank % (len(distractors) + 1)
    orders = [[*distractors[:at], chunk, *distractors[at:]]]
    if at:
        orders.append([chunk, *distractors])
    for order in orders:
        retrieval = Retrieval(
            question_terms=[],
            coverage=1.0,
            documents=[
                DocumentContext(
                    doc_key=s.doc_key,
                    version_id=None,
                    service="",
                    title="",
                    score=1.0,
                    coverage=1.0,
                    chunks=[s.retrieved()],
                )
                for s in order
            ],
        )
        built = build_prompt(retrieval, cand.question, budget_tokens=budget)
        if cand.answer in built.prompt:
            return TuningExample(
                rule=cand.rule,
                question=cand.question,
                answer=cand.answer,
                expected=cand.expected,
                prompt=built.prompt,
                doc_key=chunk.doc_key,
                chunk_id=chunk.chunk_id,
                distractors=[p.chunk.chunk_id for p in built.passages if p.chunk.chunk_id != chunk.chunk_id],
            )
    return None


__all__ = [
    "RULES",
    "RULES_VERSION",
    "AnswerTuning",
    "SourceChunk",
    "TuningExample",
    "answer_chars",
    "build_examples",
    "chunk_candidates",
    "source_chunks",
]
