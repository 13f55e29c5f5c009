"""Markdown extraction: a single-pass line scanner into :class:`Block` s.

A scanner rather than a full CommonMark parser because chunking needs only
headings, fenced code and paragraph boundaries, and the scanner is several
times faster (see docs/ingestion.md).  It understands the AWS docs dialect:
``<a name=...></a>`` heading anchors, backslash-escaped punctuation, ``+``
bullets, unlabelled and indented fences, and ``#### [ Python ]`` tab labels.
"""

from __future__ import annotations

import re
from operator import methodcaller

from docllm.ingest.text import Block, normalize_prose_unstripped

# Lines that may end a paragraph: a fence opener or an ATX heading candidate.
# Everything between two of them is plain paragraphs, found with one C-level regex.
# The leading newline is a literal prefix, which the regex engine scans for in C;
# ``^`` with MULTILINE would be tried at every character.
_SPECIAL_LINE = re.compile(r"\n[^\S\n]*(?:```|~~~|#)")
_FENCE_OPEN = re.compile(r"(\s*)(`{3,}|~{3,})(.*)")
_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*")
# A paragraph: a run of lines that each hold a non-whitespace character.
_PARAGRAPH = re.compile(r"^[^\S\n]*\S.*(?:\n[^\S\n]*\S.*)*", re.MULTILINE)
# Prose of a whole document is cleaned in one batch, paragraphs joined by this line.
# It is a private-use character, so none of the patterns below can match across it
# (each excludes it or stops at a newline); a document that contains it is cleaned
# paragraph by paragraph instead.
_SEP_CHAR = "\ue000"
_SEP = "\n" + _SEP_CHAR + "\n"
_ANCHOR = re.compile("<a\\s+name=\"[^\"\ue000]*\"\\s*>\\s*</a>|<a\\s+name='[^'\ue000]*'\\s*>\\s*</a>", re.IGNORECASE)
# Inline code spans are kept verbatim; a backslash before ASCII punctuation elsewhere is an escape.
_CODE_SPAN = re.compile(r"(``[^\n]*?``|`[^`\n]*`)")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
# The same rule as a deletion of the backslash only.  A literal replacement runs in C
# (Python 3.11 expands a ``\1`` template in Python code, once per match).  It is exact
# once escaped backslashes are set aside: ``\\`` pairs are read left to right, as
# the scanning regex would, and any backslash left over is a single one.
_ESCAPE_BACKSLASH = re.compile(r"\\(?=[!-/:-@\[-`{-~])")
_PAIR_SENTINEL = "\ue001"
# A C-level callable for the rare text that holds the sentinel itself.
_GROUP_1 = methodcaller("group", 1)
_IMAGE = re.compile('!\\[((?:\\\\.|[^\\]\\\\\ue000])*)\\]\\([^)\\s]*(?:\\s+"[^"\ue000]*")?\\)')
_TAB_LABEL = re.compile(r"^\[\s*(.+?)\s*\]$")
_COMMENT = re.compile("<!--[^\ue000]*?-->")
_fence_close_cache: dict[tuple[str, int], re.Pattern[str]] = {}


def _image_sub(m: re.Match[str]) -> str:
    alt = m.group(1).replace("\\", "")
    # The AWS exports replaced missing figures with this placeholder: it says nothing.
    return "" if "Image NOT FOUND" in alt else alt


def _unescape_prose(text: str) -> str:
    if "\\\\" not in text:
        return _ESCAPE_BACKSLASH.sub("", text)
    if _PAIR_SENTINEL in text:
        return _ESCAPE.sub(_GROUP_1, text)
    text = _ESCAPE_BACKSLASH.sub("", text.replace("\\\\", _PAIR_SENTINEL))
    return text.replace(_PAIR_SENTINEL, "\\")


def _unescape(text: str) -> str:
    if "`" not in text:
        return _unescape_prose(text)
    # Code spans only need cutting out when one holds a backslash, or a backslash
    # precedes a backtick (an escape could then reach into a span): rare in real text.
    if "\\`" not in text and "\\" not in "".join(_CODE_SPAN.findall(text)):
        return _unescape_prose(text)
    parts = _CODE_SPAN.split(text)
    # Odd indexes are the captured code spans: kept verbatim.
    for i in range(0, len(parts), 2):
        if "\\" in parts[i]:
            parts[i] = _unescape_prose(parts[i])
    return "".join(parts)


def _clean_unstripped(text: str) -> str:
    if "<a" in text or "<A" in text:
        text = _ANCHOR.sub("", text)
    if "![" in text:
        text = _IMAGE.sub(_image_sub, text)
    if "<!--" in text:
        text = _COMMENT.sub("", text)
    if "\\" in text:
        text = _unescape(text)
    return normalize_prose_unstripped(text)


def clean_inline(text: str) -> str:
    """Clean one prose block of Markdown: anchors, images, escapes, whitespace.

    Examples
    --------
    >>> clean_inline(r"Use \\(`a\\b`\\) now\\.")
    'Use (`a\\\\b`) now.'
    """
    return _clean_unstripped(text).strip()


def clean_many(texts: list[str]) -> list[str]:
    """:func:`clean_inline` of each text, cleaned as one batch (same results, fewer calls).

    Examples
    --------
    >>> clean_many([r"a\\.", "  b  c "])
    ['a.', 'b c']
    """
    if len(texts) < 2:
        return [clean_inline(t) for t in texts]
    joined = _SEP.join(texts)
    if joined.count(_SEP_CHAR) != len(texts) - 1:
        return [clean_inline(t) for t in texts]
    return [t.strip() for t in _clean_unstripped(joined).split(_SEP_CHAR)]


def _closing_fence(fence: str) -> re.Pattern[str]:
    key = (fence[0], len(fence))
    pattern = _fence_close_cache.get(key)
    if pattern is None:
        # A line of only the fence character, at least as many as opened the block.
        pattern = re.compile(rf"^[^\S\n]*{re.escape(fence[0])}{{{len(fence)},}}[^\S\n]*$", re.MULTILINE)
        _fence_close_cache[key] = pattern
    return pattern


def parse_markdown(text: str, *, clean: bool = True) -> list[Block]:
    """Split Markdown (LF line ends) into heading, text and code blocks.

    Fenced code blocks are returned verbatim, fences and indentation included; an
    unclosed fence runs to the end of the document, as in CommonMark.  With
    ``clean=False`` prose and headings keep their Markdown source (anchors, escapes,
    spacing): the structure alone, as a plain splitter would see it.

    Examples
    --------
    >>> [b.kind for b in parse_markdown("# T\\n\\npara\\n\\n```\\nx = 1\\n```\\n")]
    ['heading', 'text', 'code']
    """
    # Structure first, with the raw prose collected; then all prose is cleaned at once.
    # An item is ("text", first, end, "") for a run of paragraphs in ``raw``,
    # ("heading", index in ``raw``, level, "") or ("code", 0, 0, text).
    items: list[tuple[str, int, int, str]] = []
    raw: list[str] = []
    # A leading newline lets every line, the first included, be found after a "\n".
    text = "\n" + text
    n = len(text)
    seg_start = 1  # start of the prose not yet split into paragraphs
    pos = 1
    search = _SPECIAL_LINE.search
    paragraphs = _PARAGRAPH.findall
    while (m := search(text, pos - 1)) is not None:
        line_start = m.start() + 1
        line_end = text.find("\n", line_start)
        if line_end < 0:
            line_end = n
        line = text[line_start:line_end]
        if line.lstrip()[0] != "#":
            fm = _FENCE_OPEN.fullmatch(line)
            # A backtick fence's info string may not contain backticks (CommonMark).
            if fm is not None and not (fm.group(2)[0] == "`" and "`" in fm.group(3)):
                if seg_start < line_start:
                    first = len(raw)
                    raw += paragraphs(text, seg_start, line_start)
                    items.append(("text", first, len(raw), ""))
                fence = fm.group(2)
                close = _closing_fence(fence).search(text, line_end + 1) if line_end < n else None
                if close is None:
                    # Unclosed fence: close it so the chunk stays valid Markdown.
                    code = text[line_start:].rstrip("\n") + "\n" + fm.group(1) + fence
                    pos = seg_start = n
                else:
                    code = text[line_start : close.end()]
                    pos = seg_start = close.end() + 1
                items.append(("code", 0, 0, code))
                continue
        elif (hm := _HEADING.fullmatch(line)) is not None:
            if seg_start < line_start:
                first = len(raw)
                raw += paragraphs(text, seg_start, line_start)
                items.append(("text", first, len(raw), ""))
            items.append(("heading", len(raw), len(hm.group(1)), ""))
            raw.append(hm.group(2) or "")
            pos = seg_start = line_end + 1
            continue
        pos = line_end + 1
        if pos > n:
            break
    if seg_start < n:
        first = len(raw)
        raw += paragraphs(text, seg_start)
        items.append(("text", first, len(raw), ""))

    cleaned = clean_many(raw) if clean else raw
    blocks: list[Block] = []
    for kind, ref, arg, code in items:
        if kind == "text":
            blocks += [Block("text", t) for t in cleaned[ref:arg] if t]
        elif kind == "code":
            blocks.append(Block("code", code))
        elif (label := _TAB_LABEL.match(value := cleaned[ref])) is not None:
            # ``#### [ Python ]`` labels a code tab, not a section.
            blocks.append(Block("text", f"**{label.group(1)}**"))
        elif value:
            blocks.append(Block("heading", value, level=arg))
    return blocks
