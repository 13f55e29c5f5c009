"""Q&A items built from held-out documents by deterministic rules.

The evaluation asks the model questions whose answers are in documents it never trained on,
built without a person or a second model, so the set is the same every time for the same
documents and any item can be explained by the rule that made it. docs/evaluation.md ("Q&A
items: the rules and their limits") has the rules with examples; in short:

``cloze:<kind>`` (``service``, ``api_action``, ``cli_flag``, ``number``)
    In a prose sentence (not a heading, code block, table row, HTML or image line), the first
    factual token of the kind (:func:`docllm.evaluation.grounding.factual_tokens`) is the answer; the
    prompt is the section's heading path, a blank line, then the section text up to the answer
    (its last ``prompt_chars`` characters, cut forward to a sentence start, else a word start).
    One target per kind per sentence; answers of at most :data:`MAX_CLOZE_WORDS` words; at
    least :data:`MIN_CONTEXT_WORDS` words of section text before the answer.
``heading``
    For a section whose first body line is a prose paragraph, the prompt is the document's title
    line and the section's heading line (once when they are the same) followed by the text
    between the heading and the paragraph, and the answer is the paragraph's first sentence
    (:data:`MIN_HEADING_ANSWER_WORDS` to :data:`MAX_HEADING_ANSWER_WORDS` words).

The answer may also appear earlier in the prompt ("Amazon S3" is often named twice in a
paragraph): that is kept on purpose, using the context is the model's job. Input documents are
Markdown as the ingest stage writes chunks: ``#`` headings, fenced code, bold-only lines as
sub-headings (``**Reusing bucket names**``), lists, tables.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from docllm.evaluation.grounding import factual_tokens

CLOZE_KINDS: tuple[str, ...] = ("service", "api_action", "cli_flag", "number")
RULES: tuple[str, ...] = ("heading", *(f"cloze:{k}" for k in CLOZE_KINDS))
"""Every rule, in the order a document's items are interleaved."""
MAX_CLOZE_WORDS = 8
MIN_CONTEXT_WORDS = 3
MIN_HEADING_ANSWER_WORDS = 3
MAX_HEADING_ANSWER_WORDS = 40
DEFAULT_PROMPT_CHARS = 600


class QAItem(BaseModel):
    """One question: a prompt to continue and the expected answer, with where it came from."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Stable: a hash of document key, rule, prompt and answer."""
    rule: str
    """The rule that made it: ``heading`` or ``cloze:<kind>``."""
    prompt: str
    answer: str
    doc_key: str
    source: str
    """The section the item came from, heading line included: the grounding context of the answer."""


# ------------------------------------------------------------------------------------------- parsing

_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})")
_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+\S.*")
_BOLD_HEADING = re.compile(r"\*\*[^*\n]+\*\*[ \t]*")
_NOT_PROSE = re.compile(r"[ \t]*(?:\||<|!\[)")
_LIST_MARKER = re.compile(r"[ \t]*(?:[-+*]|\d+[.)])[ \t]+")
_BOLD_LEVEL = 7
# A sentence ends at . ! ? followed by whitespace, except after a few abbreviations.
_SENTENCE_BREAK = re.compile(r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\betc\.)(?<!\bvs\.)(?<=[.!?])\s+")


@dataclass(slots=True)
class _Line:
    start: int
    """Offset of the prose (after any list marker) in the document."""
    text: str
    first_in_body: bool
    is_list: bool


@dataclass(slots=True)
class _Section:
    path: list[str]
    """Rendered heading lines, outermost first; the last one is this section's heading."""
    start: int
    heading_end: int
    """Offset just after the heading text (== start when the section has no heading)."""
    end: int = 0
    lines: list[_Line] = field(default_factory=list)
    has_heading: bool = True


def _sections(text: str) -> tuple[str | None, list[_Section]]:
    """The document's title line and its sections with their prose lines."""
    sections = [_Section(path=[], start=0, heading_end=0, has_heading=False)]
    stack: list[tuple[int, str]] = []
    title: str | None = None
    fence: str | None = None
    body_seen = False
    offset = 0
    for raw in text.splitlines(keepends=True):
        line = raw.rstrip("\r\n")
        start, offset = offset, offset + len(raw)
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
            continue
        if m := _FENCE.match(line):
            fence = m.group(1)
            body_seen = True
            continue
        level = 0
        if _HEADING.fullmatch(line):
            level = len(line.lstrip()) - len(line.lstrip().lstrip("#"))
        elif _BOLD_HEADING.fullmatch(line):
            level = _BOLD_LEVEL
        if level:
            rendered = line.strip()
            title = title or rendered
            stack = [(lv, h) for lv, h in stack if lv < level] + [(level, rendered)]
            sections[-1].end = start
            sections.append(_Section(path=[h for _, h in stack], start=start, heading_end=start + len(line.rstrip())))
            body_seen = False
            continue
        if not line.strip():
            continue
        first = not body_seen
        body_seen = True
        if _NOT_PROSE.match(line):
            continue
        marker = _LIST_MARKER.match(line)
        skip = marker.end() if marker else len(line) - len(line.lstrip())
        sections[-1].lines.append(_Line(start + skip, line[skip:], first_in_body=first, is_list=marker is not None))
    sections[-1].end = len(text)
    return title, [s for s in sections if s.lines]


def _sentences(line: _Line) -> Iterable[tuple[int, str]]:
    """``(document offset, sentence)`` of a prose line; a sentence never spans two lines."""
    pos = 0
    for m in _SENTENCE_BREAK.finditer(line.text):
        yield line.start + pos, line.text[pos : m.start()]
        pos = m.end()
    if line.text[pos:].strip():
        yield line.start + pos, line.text[pos:].rstrip()


# ------------------------------------------------------------------------------------------- items


def _item_id(doc_key: str, rule: str, prompt: str, answer: str) -> str:
    h = hashlib.sha256("\x00".join((doc_key, rule, prompt, answer)).encode("utf-8"))
    return h.hexdigest()[:16]


def _trim_left(context: str, budget: int) -> str:
    """The last ``budget`` characters of ``context``, starting at a sentence start, else a word start."""
    if len(context) <= budget:
        return context
    window = context[-budget:]
    boundary = re.search(r"(?<=[.!?])\s+|\n", window)
    if boundary is not None and len(window) - boundary.end() >= budget // 4:
        return window[boundary.end() :]
    space = re.search(r"\s+", window)
    return window[space.end() :] if space is not None else window


def qa_candidates(doc_key: str, text: str, *, prompt_chars: int = DEFAULT_PROMPT_CHARS) -> list[QAItem]:
    """Every item the rules make from one document, in document order (module docstring: the rules).

    Example
    -------
    >>> doc = "# Limits\\n\\nYou can create up to 100 buckets in each account of Amazon S3."
    >>> [(i.rule, i.answer) for i in qa_candidates("limits.md", doc)]
    [('heading', 'You can create up to 100 buckets in each account of Amazon S3.'), \
('cloze:number', '100 buckets'), ('cloze:service', 'Amazon S3')]
    >>> qa_candidates("limits.md", doc)[1].prompt
    '# Limits\\n\\nYou can create up to'
    """
    title, sections = _sections(text)
    items: list[QAItem] = []
    for section in sections:
        source = text[section.start : section.end].strip()
        body_start = section.heading_end if section.has_heading else section.start
        header = "\n".join(section.path)
        first = section.lines[0]
        if section.has_heading and title is not None and first.first_in_body and not first.is_list:
            opening = next(iter(_sentences(first)), None)
            if opening is not None and MIN_HEADING_ANSWER_WORDS <= len(opening[1].split()) <= MAX_HEADING_ANSWER_WORDS:
                heading_line = section.path[-1]
                lead = title if heading_line == title else f"{title}\n{heading_line}"
                prompt = lead + text[section.heading_end : opening[0]]
                items.append(_make(doc_key, "heading", prompt, opening[1], source))
        for line in section.lines:
            for sent_start, sentence in _sentences(line):
                seen: set[str] = set()
                for token in factual_tokens(sentence):
                    if token.kind not in CLOZE_KINDS or token.kind in seen:
                        continue
                    seen.add(token.kind)
                    if len(token.text.split()) > MAX_CLOZE_WORDS:
                        continue
                    context = text[body_start : sent_start + token.start]
                    if len(context.split()) < MIN_CONTEXT_WORDS:
                        continue
                    body = _trim_left(context, prompt_chars).strip()
                    prompt = f"{header}\n\n{body}" if header else body
                    items.append(_make(doc_key, f"cloze:{token.kind}", prompt, token.text, source))
    return items


def _make(doc_key: str, rule: str, prompt: str, answer: str, source: str) -> QAItem:
    return QAItem(
        id=_item_id(doc_key, rule, prompt, answer),
        rule=rule,
        prompt=prompt,
        answer=answer,
        doc_key=doc_key,
        source=source,
    )


def build_qa_items(
    docs: Iterable[tuple[str, str]],
    *,
    max_items: int = 200,
    max_per_doc: int = 20,
    prompt_chars: int = DEFAULT_PROMPT_CHARS,
    rules: Sequence[str] = RULES,
) -> list[QAItem]:
    """The Q&A set of held-out documents ``(doc_key, text)``: deterministic, spread over documents and rules.

    * documents in order of key (the first text of a repeated key is used);
    * within a document, items are taken round-robin over ``rules`` (in that order), each rule's
      candidates in document order, up to ``max_per_doc``; an item equal to an earlier one (same id)
      is skipped;
    * the set is then taken round-robin over documents (each document's first item, then each
      one's second, …) up to ``max_items``, so a few long documents cannot fill it.

    The same documents always give the same items in the same order.

    Example
    -------
    >>> docs = [("b.md", "# B\\n\\nAmazon S3 stores data as objects in buckets."),
    ...         ("a.md", "# A\\n\\nEach object can be as large as 5 TB in Amazon S3.")]
    >>> [(i.doc_key, i.rule) for i in build_qa_items(docs, max_items=3)]
    [('a.md', 'heading'), ('b.md', 'heading'), ('a.md', 'cloze:service')]
    """
    unknown = set(rules) - set(RULES)
    if unknown:
        raise ValueError(f"unknown Q&A rules {sorted(unknown)}; known: {list(RULES)}")
    texts: dict[str, str] = {}
    for key, text in docs:
        texts.setdefault(key, text)
    per_doc: list[list[QAItem]] = []
    seen: set[str] = set()
    for key in sorted(texts):
        by_rule: dict[str, list[QAItem]] = {r: [] for r in rules}
        for item in qa_candidates(key, texts[key], prompt_chars=prompt_chars):
            if item.rule in by_rule:
                by_rule[item.rule].append(item)
        chosen = _round_robin([by_rule[r] for r in rules], limit=max_per_doc, seen=seen)
        if chosen:
            per_doc.append(chosen)
    return _round_robin(per_doc, limit=max_items, seen=set())


def _round_robin(queues: Sequence[Sequence[QAItem]], *, limit: int, seen: set[str]) -> list[QAItem]:
    out: list[QAItem] = []
    depth = 0
    while len(out) < limit and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and q[depth].id not in seen and len(out) < limit:
                seen.add(q[depth].id)
                out.append(q[depth])
        depth += 1
    return out
