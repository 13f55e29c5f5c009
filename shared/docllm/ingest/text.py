"""Text primitives shared by every extractor: normalisation, token estimates, language tags.

Everything here is pure and cheap; the extractors call these once per block.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

BlockKind = Literal["heading", "text", "code"]


@dataclass(slots=True)
class Block:
    """One structural unit of an extracted document.

    ``text`` of a ``code`` block is the whole fenced block (fence lines included),
    verbatim; of a ``heading`` it is the heading title without ``#`` marks.
    """

    kind: BlockKind
    text: str
    level: int = 0
    pages: list[int] | None = field(default=None)

    def render(self) -> str:
        """Markdown for the block as it appears in a chunk's text."""
        if self.kind == "heading":
            return "#" * max(1, min(self.level, 6)) + " " + self.text
        return self.text


# Unicode spaces other than the ASCII space collapse to a space; zero-width
# characters, the soft hyphen and the BOM vanish.  ZWNJ (U+200C) is kept: it is
# meaningful in Persian and some Indic scripts.  C0/C1 controls other than tab and
# newline carry nothing readable.  Both are regex substitutions with a literal
# replacement, which CPython runs entirely in C (str.translate with a dict does one
# Python-level lookup per character of non-ASCII text).
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b\u200d\u2060\ufeff]")
_ASCII_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_ASCII_BYTES = bytes(range(0x80))
# UTF-8 of the non-ASCII members of _INVISIBLE: C1 controls and U+00AD (C2 xx),
# U+200B and U+200D (E2 80 xx), U+2060 (E2 81 A0), U+FEFF (EF BB BF).
_INVISIBLE_UTF8 = re.compile(rb"\xc2[\x80-\x9f\xad]|\xe2\x80[\x8b\x8d]|\xe2\x81\xa0|\xef\xbb\xbf")
_MULTI_SPACE = re.compile(r"(?<=\S)[ \t]{2,}")
# Same rule for space-only runs, but with a literal two-space prefix, which the regex
# engine finds with a fast scan instead of trying the lookbehind at every character.
_MULTI_SPACE_ONLY = re.compile(r"  (?<=\S  ) *")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _strip_trailing_blanks(text: str) -> str:
    if "\t\n" not in text:
        # str.replace runs at memchr speed; a regex tries every space of the text.
        # Each pass removes one trailing space per line: a few passes cover real text.
        for _ in range(4):
            text = text.replace(" \n", "\n")
            if " \n" not in text:
                if "\t\n" not in text:
                    return text
                break  # a tab was hiding behind the spaces ("\t \n"): the regex takes the rest
    return _TRAILING_SPACE.sub("\n", text)


def _has_invisible(text: str) -> bool:
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw.translate(None, _ASCII_CONTROL_BYTES)) != len(raw):
        return True
    # The multi-byte characters of the class, searched among the non-ASCII bytes only
    # (a few per cent of the text).  Bytes of neighbouring characters can meet and give
    # a false alarm, which only costs the exact regex pass; a real one is never missed.
    rest = raw.translate(None, _ASCII_BYTES)
    return bool(rest) and _INVISIBLE_UTF8.search(rest) is not None


def normalize_prose_unstripped(text: str) -> str:
    """:func:`normalize_prose` without the final strip, for batches of paragraphs.

    The rules look at no more than one line at a time, so paragraphs joined by a
    separator line normalise exactly as they would one by one.
    """
    # Invisible characters go before NFKC so that a mark after one still composes.
    # A regex scan costs about ten times the byte-level test that nearly always says no.
    if _has_invisible(text):
        text = _INVISIBLE.sub("", text)
    if not text.isascii():
        # NFKC maps every Unicode space of the list to U+0020 except the Ogham space
        # mark.  Replacing the common no-break space first usually leaves the text
        # normalised, and the quick check is much cheaper than a normalisation.
        if "\u00a0" in text:
            text = text.replace("\u00a0", " ")
        if "\u1680" in text:
            text = text.replace("\u1680", " ")
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
    if " \n" in text or "\t\n" in text:
        text = _strip_trailing_blanks(text)
    if "  " in text:
        text = _MULTI_SPACE.sub(" ", text) if "\t" in text else _MULTI_SPACE_ONLY.sub(" ", text)
    elif "\t" in text:
        text = _MULTI_SPACE.sub(" ", text)
    return text


def normalize_prose(text: str) -> str:
    """Normalise Unicode (NFKC) and whitespace of prose; never call this on code.

    Runs of spaces and tabs collapse to one space, line ends lose trailing blanks,
    Unicode spaces become ASCII spaces and invisible characters are removed.

    Examples
    --------
    >>> normalize_prose("ﬁle\u00a0 name  \\nnext")
    'file name\\nnext'
    """
    return normalize_prose_unstripped(text).strip()


def normalize_newlines(text: str) -> str:
    """CRLF and lone CR become LF (code blocks included: line ends are not content)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


# Calibrated on the awsdocs corpus against tiktoken cl100k_base (see docs/ingestion.md):
# ASCII text averages about 3.6 characters per token; each non-ASCII character is
# close to one token on its own (CJK, Hangul) so it counts fully.
_ASCII_CHARS_PER_TOKEN = 3.6


def estimate_tokens(text: str) -> int:
    """Fast token estimate close to a BPE tokenizer (cl100k) without running one.

    Formula: ``ceil(ascii_chars / 3.6 + non_ascii_chars)``; ``non_ascii_chars`` is
    derived from the UTF-8 length so the whole estimate costs one encode.

    Examples
    --------
    >>> estimate_tokens("Amazon S3 stores objects in buckets.")
    10
    >>> estimate_tokens("")
    0
    """
    n = len(text)
    if text.isascii():
        # -(-n // c) is ceil(n / c).
        return int(-(-n // _ASCII_CHARS_PER_TOKEN))
    extra = len(text.encode("utf-8", "surrogatepass")) - n
    # A 2-byte char adds 1 extra byte, a 3-byte (CJK) char adds 2: halve for a char count
    # that is exact for CJK and a slight overcount for accented Latin.
    non_ascii = (extra + 1) // 2
    return int(-(-(n - non_ascii) // _ASCII_CHARS_PER_TOKEN)) + non_ascii


_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_LETTER = re.compile(r"[A-Za-z\u00c0-\u024f\u0400-\u04ff\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7a3]")


def detect_language(text: str, declared: str | None = None, *, sample_chars: int = 20_000) -> str:
    """BCP-47 primary tag from the declared tag and the scripts used in the text.

    The declared tag (``<html lang>``) wins unless the text is mostly in a script
    it cannot be written in; with nothing declared, Latin text is taken as ``en``.

    Examples
    --------
    >>> detect_language("Amazon S3 はオブジェクトストレージです。")
    'ja'
    >>> detect_language("Hello", declared="en-US")
    'en'
    """
    tag = (declared or "").strip().split("-")[0].split("_")[0].lower() or None
    sample = text[:sample_chars]
    # Curly quotes and dashes make most English text non-ASCII; only a real share of
    # multi-byte characters is worth counting scripts for.
    if sample.isascii() or len(sample.encode("utf-8", "surrogatepass")) - len(sample) < 0.1 * len(sample):
        return tag or "en"
    letters = len(_LETTER.findall(sample)) or 1
    hangul = len(_HANGUL.findall(sample))
    kana = len(_KANA.findall(sample))
    han = len(_HAN.findall(sample))
    # Code samples and product names keep Latin letters frequent in Asian-language
    # docs, so a script counts as dominant from 20% of the letters.
    if hangul / letters > 0.2:
        guess = "ko"
    elif (kana + han) / letters > 0.2:
        guess = "ja" if kana else "zh"
    else:
        guess = None
    if tag is None:
        return guess or "en"
    if guess is not None and tag in ("en", "und"):
        return guess
    return tag
