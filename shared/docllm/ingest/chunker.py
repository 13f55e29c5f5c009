"""Section-aware chunking of extracted blocks under a token budget.

Rules (docs/ingestion.md has the reasons):

* A heading starts a section; the breadcrumb is ``[guide] + [title] + open headings``.
* A section that fits the budget is one chunk; a longer one is split between
  blocks (paragraphs, list runs, code blocks), never inside a code block.  A
  single prose block longer than the budget is split at sentence ends, then at
  spaces.  A code block longer than the budget becomes one oversized chunk.
* A section under ``min_tokens`` is merged with its neighbour when the two fit
  the budget together (a heading with one short line is not worth a chunk).
* ``overlap_tokens`` repeats the trailing prose blocks of the previous chunk of
  the same section at the start of the next one; code is never repeated partially.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from docllm.ingest.text import _ASCII_CHARS_PER_TOKEN as _CHARS_PER_TOKEN
from docllm.ingest.text import Block, estimate_tokens


@dataclass(slots=True)
class _Unit:
    text: str
    tokens: int
    kind: str
    pages: list[int] | None


@dataclass(slots=True)
class _Section:
    path: list[str]
    units: list[_Unit] = field(default_factory=list)
    tokens: int = 0


@dataclass(slots=True)
class DraftChunk:
    """A chunk before it gets document metadata: breadcrumb, text, pages, tokens."""

    heading_path: list[str]
    text: str
    pages: list[int] | None
    token_estimate: int


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def _split_long_text(text: str, budget: int) -> list[str]:
    """Split an over-budget prose block at sentence ends, then at spaces, then anywhere."""
    pieces: list[str] = []
    current = ""
    max_chars = max(16, int(budget * 3.6))
    for whole in _SENTENCE_END.split(text):
        sentence = whole
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", max_chars // 2, max_chars)
            cut = cut if cut > 0 else max_chars
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        candidate = f"{current} {sentence}" if current else sentence
        if current and estimate_tokens(candidate) > budget:
            pieces.append(current)
            current = sentence
        else:
            current = candidate
    if current:
        pieces.append(current)
    return [p for p in pieces if p]


def _sections(blocks: list[Block], base: list[str], budget: int) -> list[_Section]:
    sections: list[_Section] = [_Section(list(base))]
    section = sections[0]
    units = section.units
    stack: list[Block] = []
    for block in blocks:
        kind = block.kind
        if kind == "heading":
            stack = [h for h in stack if h.level < block.level]
            stack.append(block)
            titles = [h.text for h in stack]
            # The page's H1 usually repeats the title already in the breadcrumb.
            if titles and base and titles[0] == base[-1]:
                titles = titles[1:]
            section = _Section(base + titles)
            sections.append(section)
            units = section.units
            rendered = block.render()
        else:
            rendered = block.text
        # estimate_tokens inlined for ASCII text, the common case (one call per block).
        tokens = int(-(-len(rendered) // _CHARS_PER_TOKEN)) if rendered.isascii() else estimate_tokens(rendered)
        if kind == "text" and tokens > budget:
            # Pieces aim at 90% of the budget: the section heading opens the first chunk too.
            for piece in _split_long_text(rendered, max(16, budget * 9 // 10)):
                t = estimate_tokens(piece)
                units.append(_Unit(piece, t, "text", block.pages))
                section.tokens += t
            continue
        units.append(_Unit(rendered, tokens, kind, block.pages))
        section.tokens += tokens
    return [s for s in sections if s.units]


def _emit(path: list[str], units: list[_Unit]) -> DraftChunk:
    text = "\n\n".join(u.text for u in units)
    pages: set[int] = set()
    for u in units:
        if u.pages:
            pages.update(u.pages)
    return DraftChunk(list(path), text, sorted(pages) if pages else None, estimate_tokens(text))


def chunk_blocks(
    blocks: list[Block],
    *,
    base_path: list[str],
    budget: int = 512,
    min_tokens: int = 48,
    overlap_tokens: int = 0,
) -> list[DraftChunk]:
    """Pack blocks into chunks of at most ``budget`` estimated tokens (see module rules).

    Examples
    --------
    >>> from docllm.ingest.text import Block
    >>> blocks = [Block("heading", "Intro", 2), Block("text", "Hello world.")]
    >>> [c.heading_path for c in chunk_blocks(blocks, base_path=["Guide", "Page"])]
    [['Guide', 'Page', 'Intro']]
    """
    out: list[DraftChunk] = []
    cur_path: list[str] = []
    cur: list[_Unit] = []
    cur_tokens = 0

    def has_body(units: list[_Unit]) -> bool:
        return any(u.kind != "heading" for u in units)

    for section in _sections(blocks, base_path, budget):
        if (
            cur
            and has_body(cur)
            and (cur_tokens < min_tokens or section.tokens < min_tokens)
            and cur_tokens + section.tokens <= budget
        ):
            cur.extend(section.units)
            cur_tokens += section.tokens
            continue
        if cur and has_body(cur):
            out.append(_emit(cur_path, cur))
            cur, cur_tokens = [], 0
        # Whatever is left in ``cur`` is a lone heading: it opens the next section's
        # first chunk, which carries the more specific breadcrumb.
        cur_path = section.path
        for unit in section.units:
            if cur and cur_tokens + unit.tokens > budget and has_body(cur):
                out.append(_emit(cur_path, cur))
                carried: list[_Unit] = []
                if overlap_tokens > 0:
                    carried_tokens = 0
                    for prev in reversed(cur):
                        if prev.kind != "text" or carried_tokens + prev.tokens > overlap_tokens:
                            break
                        carried.insert(0, prev)
                        carried_tokens += prev.tokens
                cur = carried
                cur_tokens = sum(u.tokens for u in carried)
            cur.append(unit)
            cur_tokens += unit.tokens
    if cur:
        out.append(_emit(cur_path, cur))
    return out


def chunk_id(doc_key: str, heading_path: list[str], text: str, occurrence: int) -> str:
    """Content-addressed id: the same document content always yields the same ids.

    ``occurrence`` disambiguates identical chunks (same breadcrumb and text) in one
    document; the position is deliberately left out so that dropping one chunk
    (boilerplate removal) does not renumber the others.

    Examples
    --------
    >>> chunk_id("s3/a.md", ["S3", "A"], "text", 0) == chunk_id("s3/a.md", ["S3", "A"], "text", 0)
    True
    """
    # One encode of the NUL-terminated parts: the same bytes as hashing them one by one.
    joined = f"{doc_key}\x00{chr(31).join(heading_path)}\x00{text}\x00{occurrence}\x00"
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()[:32]
