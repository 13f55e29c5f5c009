"""Markdown extraction: a single-pass line scanner into :class:`Block` s.

A scanner rather than a full CommonMark parser because chunking needs only
headings, fenced code and paragraph boundaries, and the scanner is several
times faster (see docs/ingestion.md).  It understands the AWS docs dialect:
``<a name=...></a>`` heading anchors, backslash-escaped punctuation, ``+``
bullets, unlabelled and indented fences, and ``#### [ Python ]`` tab labels.
"""

from __future__ import annotations

import re

from docllm.ingest.text import Block, normalize_prose

_FENCE_OPEN = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$")
_ANCHOR = re.compile(r"<a\s+name=\"[^\"]*\"\s*>\s*</a>|<a\s+name='[^']*'\s*>\s*</a>", re.IGNORECASE)
# Inline code spans are kept verbatim; a backslash before ASCII punctuation elsewhere is an escape.
_CODE_SPAN = re.compile(r"(``[^\n]*?``|`[^`\n]*`)")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_IMAGE = re.compile(r"!\[((?:\\.|[^\]\\])*)\]\([^)\s]*(?:\s+\"[^\"]*\")?\)")
_TAB_LABEL = re.compile(r"^\[\s*(.+?)\s*\]$")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def _image_sub(m: re.Match[str]) -> str:
    alt = m.group(1).replace("\\", "")
    # The AWS exports replaced missing figures with this placeholder: it says nothing.
    return "" if "Image NOT FOUND" in alt else alt


def clean_inline(text: str) -> str:
    """Clean one prose block of Markdown: anchors, images, escapes, whitespace.

    Examples
    --------
    >>> clean_inline(r"Use \\(`a\\b`\\) now\\.")
    'Use (`a\\\\b`) now.'
    """
    if "<a" in text or "<A" in text:
        text = _ANCHOR.sub("", text)
    if "![" in text:
        text = _IMAGE.sub(_image_sub, text)
    if "<!--" in text:
        text = _COMMENT.sub("", text)
    if "\\" in text:
        # Template substitution runs in C; the callback is only needed around code spans.
        if "`" in text:
            parts = _CODE_SPAN.split(text)
            # Odd indexes are the captured code spans: kept verbatim.
            for i in range(0, len(parts), 2):
                if "\\" in parts[i]:
                    parts[i] = _ESCAPE.sub(r"\1", parts[i])
            text = "".join(parts)
        else:
            text = _ESCAPE.sub(r"\1", text)
    return normalize_prose(text)


def parse_markdown(text: str) -> list[Block]:
    """Split Markdown (LF line ends) into heading, text and code blocks.

    Fenced code blocks are returned verbatim, fences and indentation included; an
    unclosed fence runs to the end of the document, as in CommonMark.

    Examples
    --------
    >>> [b.kind for b in parse_markdown("# T\\n\\npara\\n\\n```\\nx = 1\\n```\\n")]
    ['heading', 'text', 'code']
    """
    blocks: list[Block] = []
    para: list[str] = []
    lines = text.split("\n")
    n = len(lines)
    i = 0

    def flush() -> None:
        if para:
            cleaned = clean_inline("\n".join(para))
            if cleaned:
                blocks.append(Block("text", cleaned))
            para.clear()

    while i < n:
        line = lines[i]
        stripped = line.lstrip()
        if not stripped:
            flush()
            i += 1
            continue
        first = stripped[0]
        if first in "`~" and (m := _FENCE_OPEN.match(line)) is not None:
            fence = m.group(2)
            # A backtick fence's info string may not contain backticks (CommonMark).
            if not (fence[0] == "`" and "`" in m.group(3)):
                flush()
                start = i
                i += 1
                fch, flen = fence[0], len(fence)
                while i < n:
                    s = lines[i].strip()
                    if s and s[0] == fch and len(s) >= flen and s == fch * len(s):
                        break
                    i += 1
                end = min(i, n - 1)
                code = "\n".join(lines[start : end + 1])
                if i >= n:
                    # Unclosed fence: close it so the chunk stays valid Markdown.
                    code = code.rstrip("\n") + "\n" + m.group(1) + fence
                blocks.append(Block("code", code))
                i += 1
                continue
        if first == "#" and (m := _HEADING.match(line)) is not None:
            flush()
            title = clean_inline(m.group(2) or "")
            label = _TAB_LABEL.match(title)
            if label is not None:
                # ``#### [ Python ]`` labels a code tab, not a section.
                blocks.append(Block("text", f"**{label.group(1)}**"))
            elif title:
                blocks.append(Block("heading", title, level=len(m.group(1))))
            i += 1
            continue
        para.append(line)
        i += 1
    flush()
    return blocks
