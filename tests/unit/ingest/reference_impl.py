"""Slow, straightforward reference versions of the optimised ingestion code.

The production code cleans a whole document's prose in one batch, finds structure
with regexes over the whole text and hashes shingles with numpy tricks.  These are
the plain per-line, per-paragraph rules those fast paths must reproduce exactly; the
property tests compare the two on generated input.
"""

from __future__ import annotations

import re
import unicodedata

from docllm.ingest.text import Block

_SPACES = {cp: " " for cp in (0x00A0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000)}
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b\u200d\u2060\ufeff]")
_FENCE_OPEN = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$")
_ANCHOR = re.compile(r"<a\s+name=\"[^\"]*\"\s*>\s*</a>|<a\s+name='[^']*'\s*>\s*</a>", re.IGNORECASE)
_CODE_SPAN = re.compile(r"(``[^\n]*?``|`[^`\n]*`)")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_IMAGE = re.compile(r"!\[((?:\\.|[^\]\\])*)\]\([^)\s]*(?:\s+\"[^\"]*\")?\)")
_TAB_LABEL = re.compile(r"^\[\s*(.+?)\s*\]$")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def normalize_prose(text: str) -> str:
    text = _INVISIBLE.sub("", text).translate(_SPACES)
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"(?<=\S)[ \t]{2,}", " ", text)
    return text.strip()


def _image(m: re.Match[str]) -> str:
    alt = m.group(1).replace("\\", "")
    return "" if "Image NOT FOUND" in alt else alt


def clean_inline(text: str) -> str:
    text = _COMMENT.sub("", _IMAGE.sub(_image, _ANCHOR.sub("", text)))
    parts = _CODE_SPAN.split(text)
    text = "".join(p if i % 2 else _ESCAPE.sub(r"\1", p) for i, p in enumerate(parts))
    return normalize_prose(text)


def parse_markdown(text: str) -> list[Block]:
    """The line-by-line scanner the regex-driven one replaced."""
    blocks: list[Block] = []
    para: list[str] = []
    lines = text.split("\n")
    n, i = len(lines), 0

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
        m = _FENCE_OPEN.match(line) if stripped[0] in "`~" else None
        if m is not None and not (m.group(2)[0] == "`" and "`" in m.group(3)):
            flush()
            start, fence = i, m.group(2)
            i += 1
            while i < n:
                s = lines[i].strip()
                if s and s[0] == fence[0] and len(s) >= len(fence) and s == fence[0] * len(s):
                    break
                i += 1
            code = "\n".join(lines[start : min(i, n - 1) + 1])
            if i >= n:
                code = code.rstrip("\n") + "\n" + m.group(1) + fence
            blocks.append(Block("code", code))
            i += 1
            continue
        h = _HEADING.match(line) if stripped[0] == "#" else None
        if h is not None:
            flush()
            title = clean_inline(h.group(2) or "")
            label = _TAB_LABEL.match(title)
            if label is not None:
                blocks.append(Block("text", f"**{label.group(1)}**"))
            elif title:
                blocks.append(Block("heading", title, level=len(h.group(1))))
            i += 1
            continue
        para.append(line)
        i += 1
    flush()
    return blocks


def collapsed_shingle_input(text: str) -> bytes:
    """What MinHash shingles: ASCII case folded, ASCII whitespace removed, UTF-8."""
    folded = "".join(c.lower() if "A" <= c <= "Z" else c for c in text)
    return "".join(c for c in folded if c not in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f ").encode("utf-8", "surrogatepass")
