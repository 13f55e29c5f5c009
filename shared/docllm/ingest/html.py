"""HTML extraction: the page's main content as Markdown-like blocks.

selectolax (lexbor) parses; the main-content root is found with a short list
of selectors that documentation generators use (MkDocs Material ``article``,
``main``, ``[role=main]``...) and, inside it, everything that is navigation,
chrome or script is removed before the walk.  Code blocks come out verbatim
(``<pre>`` text with its indentation, line-number gutters dropped), lists and
tables as Markdown.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

from docllm.ingest.exceptions import NoMainContentError, NotFoundPageError, RedirectStubError
from docllm.ingest.text import Block, normalize_prose

# Tried in order; the first that holds enough readable text is the main content.
# ``True`` marks a root that generators reserve for the page body, so the page
# chrome (headers, drawers, banners) is already outside it.
_MAIN_SELECTORS: tuple[tuple[str, bool], ...] = (
    ("article.md-content__inner", True),
    ("main article", True),
    ("article", True),
    ("main", True),
    ("[role=main]", True),
    ("#main-content", False),
    ("#content", False),
    (".content", False),
    ("body", False),
)
# Each selector costs one pass over the subtree (about 0.05 ms per 1,000 nodes), so
# the long list of chrome selectors only runs on roots that may contain chrome.
_DROP_IN_CONTENT = ", ".join(
    (
        "script",
        "style",
        "noscript",
        "template",
        "iframe",
        "svg",
        "canvas",
        "button",
        "form",
        "input",
        "select",
        "nav",
        "footer",
        "aside",
        "dialog",
        "[role=navigation]",
        ".headerlink",
        ".md-content__button",
        ".md-source-file",
        ".md-feedback",
        ".linenos",
        ".linenodiv",
        ".toc",
        "#toc",
    )
)
_DROP_IN_PAGE = ", ".join(
    (
        _DROP_IN_CONTENT,
        "header",
        "[role=banner]",
        "[role=contentinfo]",
        "[role=search]",
        "[aria-hidden=true]",
        ".md-sidebar",
        ".md-banner",
        ".md-header",
        ".md-footer",
        ".md-tabs",
        ".table-of-contents",
        ".breadcrumb",
        ".breadcrumbs",
        "[class*=cookie]",
        "[id*=cookie]",
        "[class*=consent]",
        "[id*=consent]",
        "[class*=gdpr]",
        "[class*=advert]",
        "[class*=newsletter]",
        "[class*=social]",
    )
)
_MIN_ROOT_CHARS = 200
_HTML_LANG = re.compile(r"<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z0-9_-]+)", re.IGNORECASE)
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_REFRESH = re.compile(r"<meta\b[^>]*http-equiv\s*=\s*[\"']?refresh[^>]*>", re.IGNORECASE)
_REFRESH_URL = re.compile(r"url\s*=\s*([^\"'>\s;]+)", re.IGNORECASE)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "main",
        "details",
        "summary",
        "blockquote",
        "figure",
        "figcaption",
        "ul",
        "ol",
        "li",
        "dl",
        "dt",
        "dd",
        "table",
        "pre",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "center",
        "address",
        "fieldset",
        "legend",
        "header",
        "footer",
        "aside",
        "nav",
    }
)
_SKIP_TAGS = frozenset({"-comment", "script", "style", "noscript", "template"})
_WS = re.compile(r"\s+")
# Stands in for <br> while source whitespace is collapsed (a private-use code point).
_BR = "\ue000"
_NOT_FOUND = re.compile(r"\b404\b|page not found|not found|페이지를 찾을 수 없|見つかりません", re.IGNORECASE)
_LANG_CLASS = re.compile(r"\blanguage-([\w+#-]+)")


@dataclass(slots=True)
class HtmlDocument:
    """What the HTML extractor found: blocks plus page-level metadata."""

    blocks: list[Block]
    title: str | None
    guide: str | None
    declared_language: str | None


def _inline_node(child: LexborNode) -> str:
    """One inline node as text: inline code keeps backticks, ``<br>`` is a line break."""
    tag = child.tag
    if tag == "-text":
        return child.text_content or ""
    if tag in _SKIP_TAGS:
        return ""
    if tag == "code":
        code = _WS.sub(" ", child.text(deep=True))
        if not code.strip():
            return ""
        fence = "``" if "`" in code else "`"
        return f"{fence}{code}{fence}"
    if tag == "br":
        return _BR
    if tag == "img":
        return child.attributes.get("alt") or ""
    return _inline(child)


def _inline(node: LexborNode) -> str:
    """Text of an inline subtree."""
    return "".join(_inline_node(child) for child in node.iter(include_text=True))


def _clean_inline(text: str) -> str:
    # Source newlines inside running text are layout, not content; <br> newlines stay.
    text = _WS.sub(" ", text)
    if _BR in text:
        text = text.replace(" " + _BR, _BR).replace(_BR + " ", _BR).replace(_BR, "\n")
    return normalize_prose(text)


def _code_block(pre: LexborNode) -> Block:
    code_node = pre.css_first("code") or pre
    code = code_node.text(deep=True)
    if code.endswith("\n"):
        code = code[:-1]
    lang = ""
    for candidate in (code_node, pre, pre.parent):
        if candidate is not None:
            m = _LANG_CLASS.search(candidate.attributes.get("class") or "")
            if m:
                lang = m.group(1)
                break
    fence = "```"
    while fence in code:
        fence += "`"
    return Block("code", f"{fence}{lang}\n{code}\n{fence}")


def _table(node: LexborNode) -> list[Block]:
    if "highlighttable" in (node.attributes.get("class") or ""):
        pre = node.css_first("td.code pre") or node.css_first("pre")
        return [_code_block(pre)] if pre is not None else []
    if node.css_first("pre") is not None:
        # Layout tables around code: walk them as containers so code stays verbatim.
        return _container(node)
    rows: list[list[str]] = []
    for tr in node.css("tr"):
        cells = [
            _clean_inline(_inline(td)).replace("\n", " ").replace("|", "\\|")
            for td in tr.iter()
            if td.tag in ("td", "th")
        ]
        if any(cells):
            rows.append(cells)
    if not rows:
        return []
    width = max(len(r) for r in rows)
    lines = []
    for idx, cells in enumerate(rows):
        padded = cells + [""] * (width - len(cells))
        lines.append("| " + " | ".join(padded) + " |")
        if idx == 0:
            lines.append("|" + "---|" * width)
    return [Block("text", "\n".join(lines))]


def _list(node: LexborNode, depth: int, out: list[Block], lines: list[str]) -> None:
    ordered = node.tag == "ol"
    number = 0
    for li in node.iter():
        if li.tag != "li":
            continue
        number += 1
        marker = f"{number}." if ordered else "-"
        indent = "  " * depth
        buf: list[str] = []
        first = True

        def flush_item(buf: list[str] = buf, indent: str = indent, marker: str = marker) -> None:
            nonlocal first
            text = _clean_inline("".join(buf)).replace("\n", " ")
            buf.clear()
            if text:
                lines.append(f"{indent}{marker if first else ' ' * len(marker)} {text}")
                first = False

        for child in li.iter(include_text=True):
            tag = child.tag
            if tag in ("ul", "ol"):
                flush_item()
                _list(child, depth + 1, out, lines)
            elif tag in ("pre", "table") or (tag == "div" and child.css_first("pre") is not None):
                flush_item()
                if lines:
                    out.append(Block("text", "\n".join(lines)))
                    lines.clear()
                if tag == "table":
                    out.extend(_table(child))
                elif tag == "div":
                    out.extend(_container(child))
                else:
                    out.append(_code_block(child))
            elif tag == "p":
                flush_item()
                buf.append(_inline(child))
                flush_item()
            else:
                buf.append(_inline_node(child))
        flush_item()


def _container(node: LexborNode) -> list[Block]:
    blocks: list[Block] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            text = _clean_inline("".join(buf))
            buf.clear()
            if text:
                blocks.append(Block("text", text))

    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            buf.append(child.text_content or "")
            continue
        if tag in _SKIP_TAGS:
            continue
        if tag in _HEADINGS:
            flush()
            title = _clean_inline(_inline(child)).replace("\n", " ")
            if title:
                blocks.append(Block("heading", title, level=_HEADINGS[tag]))
        elif tag == "pre":
            flush()
            blocks.append(_code_block(child))
        elif tag == "table":
            flush()
            blocks.extend(_table(child))
        elif tag in ("ul", "ol"):
            flush()
            lines: list[str] = []
            _list(child, 0, blocks, lines)
            if lines:
                blocks.append(Block("text", "\n".join(lines)))
        elif tag in ("p", "dt", "dd", "summary", "figcaption", "legend", "address"):
            flush()
            text = _clean_inline(_inline(child))
            if text:
                blocks.append(Block("text", text))
        elif tag == "hr":
            flush()
        elif tag in _BLOCK_TAGS or child.css_first("p, pre, div, table, ul, ol, h1, h2, h3, h4") is not None:
            flush()
            blocks.extend(_container(child))
        else:
            buf.append(_inline_node(child))
    flush()
    return blocks


def _split_title(raw: str | None) -> tuple[str | None, str | None]:
    if not raw:
        return None, None
    raw = _WS.sub(" ", raw).strip()
    if " - " in raw:
        title, guide = raw.rsplit(" - ", 1)
        return title.strip() or None, guide.strip() or None
    if " | " in raw:
        title, guide = raw.rsplit(" | ", 1)
        return title.strip() or None, guide.strip() or None
    return raw or None, None


def _extract_blocks(tree: LexborHTMLParser) -> list[Block]:
    """Blocks of the first main-content root that still has text once chrome is removed.

    Landing pages put their content outside ``<main>`` (which then holds only the
    navigation), so a root that yields too little falls through to the next one.
    """
    best: list[Block] = []
    best_chars = 0
    for selector, is_content_root in _MAIN_SELECTORS:
        candidate = tree.css_first(selector)
        if candidate is None or not (candidate.text(deep=True) or "").strip():
            continue
        for junk in candidate.css(_DROP_IN_CONTENT if is_content_root else _DROP_IN_PAGE):
            junk.decompose()
        blocks = _container(candidate)
        chars = sum(len(b.text) for b in blocks)
        if chars >= _MIN_ROOT_CHARS:
            return blocks
        if chars > best_chars:
            best, best_chars = blocks, chars
    return best


def extract_html(text: str, *, min_chars: int = 40) -> HtmlDocument:
    """Extract the main content of an HTML page.

    Raises
    ------
    RedirectStubError
        for a meta-refresh page with no content of its own.
    NotFoundPageError
        for a site's 404 page.
    NoMainContentError
        when nothing readable is left once the page chrome is removed.

    Examples
    --------
    >>> doc = extract_html("<html lang=en><title>Intro - Guide</title><nav>Menu</nav>"
    ...                    "<main><h1>Intro</h1><p>Hello, this paragraph is the whole body of the page.</p>"
    ...                    "</main></html>")
    >>> (doc.title, doc.guide, [b.text for b in doc.blocks])
    ('Intro', 'Guide', ['Intro', 'Hello, this paragraph is the whole body of the page.'])
    """
    # Page-level facts come from the head with regexes, so that only the content
    # region needs parsing: on MkDocs sites the navigation drawer is most of the page.
    head_end = text.find("<body")
    head = text[: head_end if head_end > 0 else 16384]
    m = _HTML_LANG.search(head)
    declared = m.group(1) if m else None
    m = _TITLE.search(head)
    raw_title = html_lib.unescape(m.group(1)) if m else None
    title, guide = _split_title(raw_title)
    refresh = _REFRESH.search(head)

    region = text
    a, b = text.find("<article"), text.rfind("</article>")
    if 0 <= a < b:
        region = text[a : b + len("</article>")]
    tree = LexborHTMLParser(region)
    blocks = _extract_blocks(tree)
    if sum(len(b.text) for b in blocks) < _MIN_ROOT_CHARS and region is not text:
        blocks = _extract_blocks(LexborHTMLParser(text))
    body_chars = sum(len(b.text) for b in blocks if b.kind != "heading")

    if refresh is not None and body_chars < 200:
        url = _REFRESH_URL.search(refresh.group(0))
        target = url.group(1) if url else "another page"
        raise RedirectStubError(f"The page only redirects to {target}.")
    first_h1 = next((b.text for b in blocks if b.kind == "heading"), None)
    if body_chars < 500 and any(_NOT_FOUND.search(t) for t in (first_h1 or "", raw_title or "") if t):
        raise NotFoundPageError(f"The page is a 'not found' error page ({first_h1 or raw_title}).")
    if body_chars < min_chars and not any(b.kind == "code" for b in blocks):
        raise NoMainContentError(
            f"Only {body_chars} characters of main content remain once navigation and page chrome are removed."
        )
    if title is None:
        title = first_h1
    return HtmlDocument(blocks, title, guide, declared)
