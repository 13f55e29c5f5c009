"""HTML building blocks with escaping by construction.

:class:`Html` marks text that is already markup; everything else that reaches :func:`h` or
:func:`join` is escaped with :func:`html.escape`. No template engine: the pages are small, and a
function per block keeps every interpolation visibly escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from urllib.parse import urlencode

from docllm.dashboard.style import CSS_PATH


class Html(str):
    """Markup that is safe to insert as is (built here from escaped parts)."""

    __slots__ = ()

    def __add__(self, other: object) -> Html:
        # Markup + markup stays markup; markup + text escapes the text, so concatenation never unescapes.
        return Html(str.__add__(self, esc(other)))


def esc(value: object) -> Html:
    """``value`` as text in HTML (markup passes through untouched)."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    if isinstance(value, float):
        value = f"{value:.4g}"
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Html:
    return Html(sep.join(esc(p) for p in parts))


def h(tag: str, *children: object, **attrs: object) -> Html:
    """``<tag attrs>children</tag>``; attribute names use ``_`` for ``-`` (``aria_label``), a trailing
    ``_`` is dropped (``class_``); ``True`` writes a bare attribute, ``None``/``False`` omits it."""
    out = [f"<{tag}"]
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        attr = name.rstrip("_").replace("_", "-")
        out.append(f" {attr}" if value is True else f' {attr}="{esc(value)}"')
    out.append(">")
    if tag in ("input", "meta", "link", "br", "hr", "img"):
        return Html("".join(out))
    return Html("".join(out) + join(children) + f"</{tag}>")


def url(path: str, **params: object) -> str:
    """``path`` with the query parameters that are set."""
    kept = {k: str(v) for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urlencode(kept) if kept else "")


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, caption: str, empty: str = "nothing yet"
) -> Html:
    body = [h("tr", *(h("td", cell) for cell in row)) for row in rows]
    if not body:
        body = [h("tr", h("td", empty, colspan=str(len(headers)), class_="empty"))]
    head = h("thead", h("tr", *(h("th", name, scope="col") for name in headers)))
    return h("table", h("caption", caption), head, h("tbody", *body))


def pager(path: str, *, next_after: str | None, first: bool, **params: object) -> Html:
    """Links to the first and the next page (keyset pagination: a page starts after a key)."""
    links = []
    if not first:
        links.append(h("a", "first page", href=url(path, **params)))
    if next_after is not None:
        links.append(h("a", "next page →", href=url(path, after=next_after, **params), rel="next"))
    return h("nav", *links, class_="pager", aria_label="pages") if links else Html("")


def badge(status: object) -> Html:
    text = str(status or "")
    return h("span", text, class_=f"badge badge-{text.lower().replace(' ', '-')}")


def bar_chart(title: str, values: Sequence[tuple[str, float]], *, unit: str = "") -> Html:
    """A horizontal bar chart as inline SVG (no script, no dependency), with a text alternative."""
    if not values:
        return Html("")
    top = max((v for _, v in values), default=0.0) or 1.0
    row, label_w, bar_w = 22, 170, 260
    parts = []
    for i, (label, value) in enumerate(values):
        y = i * row
        width = max(1.0, bar_w * value / top) if value else 0.0
        parts.append(h("text", label[:26], x="0", y=str(y + 15), class_="chart-label"))
        parts.append(h("rect", x=str(label_w), y=str(y + 4), width=f"{width:.1f}", height="14", class_="chart-bar"))
        parts.append(h("text", f"{value:g}{unit}", x=f"{label_w + width + 6:.1f}", y=str(y + 15), class_="chart-value"))
    height = row * len(values)
    summary = "; ".join(f"{label}: {value:g}{unit}" for label, value in values)
    return h(
        "figure",
        h(
            "svg",
            h("title", f"{title}: {summary}"),
            *parts,
            role="img",
            viewBox=f"0 0 {label_w + bar_w + 80} {height}",
            width=str(label_w + bar_w + 80),
            height=str(height),
            aria_label=f"{title}: {summary}",
        ),
        h("figcaption", title),
    )


def message(text: str, *, kind: str = "info") -> Html:
    """A notice; errors are announced to screen readers as they appear."""
    role = "alert" if kind == "error" else "status"
    return h("p", text, class_=f"notice notice-{kind}", role=role)


NAV = (
    ("/dashboard", "Overview"),
    ("/dashboard/documents", "Documents"),
    ("/dashboard/models", "Models"),
    ("/dashboard/benchmarks", "Benchmarks"),
    ("/dashboard/deployments", "Deployments"),
    ("/dashboard/incidents", "Incidents"),
    ("/dashboard/ask", "Ask"),
)


def layout(title: str, body: object, *, active: str) -> Html:
    """The whole page: skip link, navigation (the current page marked for screen readers), main."""
    nav = h(
        "nav",
        h(
            "ul",
            *(
                h("li", h("a", label, href=path, aria_current="page" if path == active else None))
                for path, label in NAV
            ),
        ),
        aria_label="dashboard",
    )
    return Html(
        "<!doctype html>"
        + h(
            "html",
            h(
                "head",
                h("meta", charset="utf-8"),
                h("meta", name="viewport", content="width=device-width, initial-scale=1"),
                h("title", f"{title} · docllm"),
                h("link", rel="stylesheet", href=CSS_PATH),
                h("link", rel="icon", href="data:,"),  # no favicon request (and no 404 for it)
            ),
            h(
                "body",
                h("a", "Skip to content", href="#main", class_="skip"),
                h("header", h("p", h("a", "docllm", href="/dashboard"), class_="brand"), nav),
                h("main", h("h1", title), body, id="main", tabindex="-1"),
            ),
            lang="en",
        )
    )


def form(action: str, *fields: object, csrf: str | None, submit: str, method: str = "post", **attrs: object) -> Html:
    """A form; a state-changing one carries the CSRF token."""
    hidden = h("input", type="hidden", name="csrf", value=csrf) if csrf is not None else Html("")
    return h("form", hidden, *fields, h("button", submit, type="submit"), action=action, method=method, **attrs)


def field(
    label: str, name: str, *, value: object = "", kind: str = "text", required: bool = False, **attrs: object
) -> Html:
    """A labelled input (``kind="textarea"`` for a text area)."""
    ident = f"f-{name}"
    if kind == "textarea":
        control = h("textarea", value, id=ident, name=name, required=required, **attrs)
    else:
        control = h("input", id=ident, name=name, type=kind, value=value, required=required, **attrs)
    return h("p", h("label", label, for_=ident), control, class_="field")
