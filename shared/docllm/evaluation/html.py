"""The evaluation report as one self-contained HTML page: tables and inline SVG plots, no network, no script.

The page is stored beside the model and opened years later, perhaps offline, by
an auditor: so it loads nothing (a Content-Security-Policy forbids every fetch),
runs no JavaScript, and draws its plots as SVG written here. Prompts, answers and
benchmark rows come from documents and from users, so every value is
HTML-escaped on its way in; the only markup is ours.

Plots carry stable hooks for tests and tools: ``<figure class="plot"
data-plot="loss|metrics|benchmarks">`` and ``data-series`` on each path or bar
(``train``, ``validation``, ``candidate``, ``champion``).

Example
-------
>>> Path("report.html").write_text(render_html(report), encoding="utf-8")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import TypeVar

from docllm.evaluation.report import (
    BENCHMARK_PREFIX,
    HIGHER_IS_BETTER,
    EvaluationReport,
    TrainingPoint,
    UnknownMetricError,
    higher_is_better,
)

MAX_PLOT_POINTS = 400
"""Points per loss curve; longer histories are thinned evenly (first and last kept) to keep the page small."""
MAX_QA_EXAMPLES = 10
MAX_BENCHMARK_EXAMPLES = 5
MAX_HALLUCINATION_EXAMPLES = 10

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

# One colour per series, readable in print and by most colour-blind readers (blue/orange, blue/grey).
COLOURS = {"train": "#2563eb", "validation": "#ea580c", "candidate": "#2563eb", "champion": "#9ca3af"}

# Benchmark scores that live in [0, 1] and so share one axis; the first present is a benchmark's main metric.
_UNIT_SCORES = ("exact_match", "acc", "acc_norm", "token_f1", "f1", "contains", "accuracy")

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1d2126; background: #fff; max-width: 980px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .25rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin-bottom: .25rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; white-space: nowrap; }
table.wide { width: 100%; table-layout: fixed; }
table.examples th:nth-child(1) { width: 9rem; }
table.examples th:nth-child(5), table.examples th:nth-child(6) { width: 3.5rem; }
td.text { white-space: pre-wrap; overflow-wrap: anywhere;
          font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
figure.plot { margin: 1rem 0; }
figure.plot svg { max-width: 100%; height: auto; display: block; }
figcaption, .note { color: #57606a; font-size: .9em; }
.error { color: #b42318; }
.meta th { width: 12rem; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #1d2126; }
svg .axis { stroke: #57606a; stroke-width: 1; }
svg .grid { stroke: #e5e7eb; stroke-width: 1; }
@media print {
  body { max-width: none; margin: 0; font-size: 10pt; }
  section, figure, table { break-inside: avoid; }
  h2 { break-after: avoid; }
}
"""

T = TypeVar("T")


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _fmt(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"


def _direction(metric: str) -> str:
    try:
        return "↑ higher" if higher_is_better(metric) else "↓ lower"
    except UnknownMetricError:
        return "?"


def downsample(points: Sequence[T], limit: int = MAX_PLOT_POINTS) -> list[T]:
    """At most ``limit`` items, evenly spaced, always keeping the first and the last (deterministic).

    Example
    -------
    >>> downsample(list(range(10)), 4)
    [0, 3, 6, 9]
    """
    n = len(points)
    if n <= limit:
        return list(points)
    if limit < 2:
        return list(points[-limit:]) if limit > 0 else []
    indices = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [points[i] for i in indices]


# --- tables -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cell:
    text: str
    kind: str = ""  # "num" right-aligns, "text" keeps line breaks of user text


def _num(value: float | int | None) -> _Cell:
    return _Cell(_fmt(value), "num")


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, css: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            c = cell if isinstance(cell, _Cell) else _Cell(str(cell))
            cls = f' class="{c.kind}"' if c.kind else ""
            cells.append(f"<td{cls}>{_e(c.text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --- SVG helpers ----------------------------------------------------------------------------------


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


def _ticks(lo: float, hi: float, target: int = 5, *, tight: bool = False) -> tuple[float, float, list[float]]:
    """A domain covering ``[lo, hi]`` and round tick values inside it.

    The domain is widened to whole ticks, unless ``tight`` (the x axis: the curve then
    reaches the right edge rather than stopping short of a round number).
    """
    if not hi > lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo, target)
    if tight:
        first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    else:
        first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
        lo, hi = first * step, last * step
    return lo, hi, [i * step for i in range(first, last + 1)]


def _tick_label(value: float, step: float, si: bool) -> str:
    if si and abs(value) >= 1000:
        for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= div:
                return f"{value / div:.{_decimals(step / div)}f}{suffix}"
    return f"{value:.{_decimals(step)}f}"


def _decimals(step: float) -> int:
    """Digits after the point that tell ticks ``step`` apart (2.5 → 1, 0.25 → 2, 200 → 0)."""
    for d in range(8):
        scaled = step * 10**d
        if abs(scaled - round(scaled)) < 1e-6 * max(1.0, scaled):
            return d
    return 8


def _svg_open(width: int, height: int, title: str, label: str) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(label)}"><title>{_e(title)}</title>'
    )


def _figure(name: str, body: str, caption: str) -> str:
    return f'<figure class="plot" data-plot="{name}">{body}<figcaption>{_e(caption)}</figcaption></figure>'


def _text_width(text: str) -> float:
    # No layout engine here: an average glyph of the 12px sans-serif is under 7px wide, so entries never overlap.
    return 7.0 * len(text)


def _legend(x: float, y: float, entries: Sequence[tuple[str, str, str]], *, line: bool, stacked: bool) -> str:
    """Legend entries (series, label, colour) from ``(x, y)``, stacked or in one row; a stroke or a swatch."""
    out = []
    for series, label, colour in entries:
        if line:
            mark = f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" stroke="{colour}" stroke-width="2.5"/>'
        else:
            mark = f'<rect x="{x + 6}" y="{y - 6}" width="12" height="12" fill="{colour}"/>'
        out.append(
            f'<g class="legend" data-legend="{series}">{mark}<text x="{x + 28}" y="{y + 4}">{_e(label)}</text></g>'
        )
        if stacked:
            y += 18
        else:
            x += 28 + _text_width(label) + 24
    return "".join(out)


# --- (a) loss curves ------------------------------------------------------------------------------


def _loss_plot(history: Sequence[TrainingPoint]) -> str:
    width, height = 900, 340
    left, right, top, bottom = 64, 20, 16, 52
    by_tokens = any(p.tokens > 0 for p in history)

    def x_of(p: TrainingPoint) -> float:
        return float(p.tokens if by_tokens else p.step)

    series = {
        "train": downsample([(x_of(p), p.train_loss) for p in history if p.train_loss is not None]),
        "validation": downsample([(x_of(p), p.val_loss) for p in history if p.val_loss is not None]),
    }
    xs = [x for s in series.values() for x, _ in s]
    ys = [float(y) for s in series.values() for _, y in s if y is not None]
    x0, x1, xticks = _ticks(min(0.0, *xs), max(xs), tight=True)
    y0, y1, yticks = _ticks(min(ys), max(ys))
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    xstep, ystep = _nice_step(x1 - x0), yticks[1] - yticks[0]
    parts = [_svg_open(width, height, "Training and validation loss", "Training and validation loss curves")]
    for t in yticks:
        y = sy(t)
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick_label(t, ystep, False)}</text>')
    for t in xticks:
        x = sx(t)
        parts.append(f'<line class="axis" x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 5}"/>')
        label = _tick_label(t, xstep, by_tokens)
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">{label}</text>')
    parts.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}"/>')
    parts.append(f'<line class="axis" x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}"/>')
    x_title = "tokens seen" if by_tokens else "step"
    parts.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{x_title}</text>')
    parts.append(
        f'<text x="16" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 {top + ph / 2})">'
        "loss (nats/token)</text>"
    )
    for name, points in series.items():
        if not points:
            continue
        d = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(float(y or 0)):.1f}" for i, (x, y) in enumerate(points))
        parts.append(
            f'<path data-series="{name}" d="{d}" fill="none" stroke="{COLOURS[name]}" stroke-width="2" '
            'stroke-linejoin="round" stroke-linecap="round"/>'
        )
        if name == "validation":  # evaluated rarely: mark each evaluation
            for x, y in points[:: max(1, len(points) // 40)]:
                parts.append(
                    f'<circle data-series="{name}" cx="{sx(x):.1f}" cy="{sy(float(y or 0)):.1f}" r="3" '
                    f'fill="{COLOURS[name]}"/>'
                )
    entries = [(n, "training loss" if n == "train" else "validation loss", COLOURS[n]) for n in series if series[n]]
    parts.append(_legend(left + pw - 150, top + 14, entries, line=True, stacked=True))
    parts.append("</svg>")
    return "".join(parts)


def _loss_section(report: EvaluationReport) -> str:
    history = report.training.history if report.training else []
    usable = [p for p in history if p.train_loss is not None or p.val_loss is not None]
    if usable:
        caption = "Loss per token on the training and validation splits during training" + (
            f" ({len(usable)} logged points, thinned to at most {MAX_PLOT_POINTS} per curve)."
            if len(usable) > MAX_PLOT_POINTS
            else "."
        )
        body = _loss_plot(usable)
    else:
        caption = "Training and validation loss."
        body = '<p class="note">No training history was recorded for this model, so there is no loss curve.</p>'
    out = _figure("loss", body, caption)
    if report.training and report.training.metrics:
        rows = [[k, _num(v)] for k, v in sorted(report.training.metrics.items())]
        out += _table(["training metric", "value"], rows)
    return out


# --- (b, c) bar charts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _BarGroup:
    label: str
    values: dict[str, float | None]  # series -> value


def _bar_plot(
    groups: Sequence[_BarGroup],
    legend: Sequence[tuple[str, str]],
    *,
    title: str,
    length: Callable[[_BarGroup, float], float],
    axis_unit: bool,
) -> str:
    """Horizontal grouped bars; ``length`` maps a value to ``[0, 1]`` of the bar area."""
    label_w, bar_w, value_w = 250, 480, 90
    bar_h, gap, top = 14, 12, 40
    series = [s for s, _ in legend]
    group_h = bar_h * len(series) + gap
    width = label_w + bar_w + value_w
    height = top + group_h * len(groups) + (28 if axis_unit else 8)
    parts = [_svg_open(width, height, title, title)]
    entries = [(s, label, COLOURS[s]) for s, label in legend]
    parts.append(_legend(label_w - 6, 14, entries, line=False, stacked=False))  # one row above the bars
    bottom = top + group_h * len(groups) - gap
    if axis_unit:
        for t in (0, 0.25, 0.5, 0.75, 1.0):
            x = label_w + t * bar_w
            parts.append(f'<line class="grid" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom + 4}"/>')
            parts.append(f'<text x="{x:.1f}" y="{bottom + 20}" text-anchor="middle">{t:g}</text>')
    parts.append(f'<line class="axis" x1="{label_w}" y1="{top - 4}" x2="{label_w}" y2="{bottom + 4}"/>')
    for g_index, group in enumerate(groups):
        y0 = top + g_index * group_h
        mid = y0 + bar_h * len(series) / 2
        shown = group.label if len(group.label) <= _MAX_LABEL else group.label[: _MAX_LABEL - 1] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{mid + 4:.1f}" text-anchor="end"><title>{_e(group.label)}</title>'
            f"{_e(shown)}</text>"
        )
        for s_index, s in enumerate(series):
            y = y0 + s_index * bar_h
            value = group.values.get(s)
            w = 0.0 if value is None else max(0.0, min(1.0, length(group, value))) * bar_w
            parts.append(
                f'<rect data-series="{s}" x="{label_w}" y="{y + 1}" width="{w:.1f}" height="{bar_h - 2}" '
                f'fill="{COLOURS[s]}"><title>{_e(f"{s}: {_fmt(value)}")}</title></rect>'
            )
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 3}">{_e(_fmt(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


_MAX_LABEL = 34  # characters of a bar's label that fit left of the bars; longer ones are cut, whole in a tooltip


def _pair_scale(group: _BarGroup, value: float) -> float:
    biggest = max((abs(v) for v in group.values.values() if v is not None), default=0.0)
    return abs(value) / biggest if biggest > 0 else 0.0


def _unit_scale(group: _BarGroup, value: float) -> float:
    return value


def _series_legend(report: EvaluationReport) -> list[tuple[str, str]]:
    legend = [("candidate", f"this model ({report.model_version})")]
    if report.champion:
        legend.append(("champion", f"champion ({report.champion.model_version})"))
    return legend


def _metrics_section(report: EvaluationReport) -> str:
    champion = report.champion.metrics if report.champion else {}
    names = [n for n in HIGHER_IS_BETTER if n in report.metrics or n in champion]
    if names:
        groups = [
            _BarGroup(
                f"{n} {'↑' if HIGHER_IS_BETTER[n] else '↓'}",
                {"candidate": report.metrics.get(n), "champion": champion.get(n)},
            )
            for n in names
        ]
        body = _bar_plot(
            groups,
            _series_legend(report),
            title="Headline metrics, this model against the champion",
            length=_pair_scale,
            axis_unit=False,
        )
    else:
        body = '<p class="note">No headline metric could be measured.</p>'
    caption = (
        "Each metric's bars are scaled to the larger of its values, so metrics of different scales share one plot; "
        "the printed numbers are the values. ↑ higher is better, ↓ lower is better."
    )
    if not report.champion:
        caption += " The family has no champion yet: nothing to compare against."
    out = _figure("metrics", body, caption)
    all_names = names + sorted(
        n
        for n in set(report.metrics) | set(champion)
        if n not in HIGHER_IS_BETTER and not n.startswith(BENCHMARK_PREFIX)
    )
    rows = []
    for n in all_names:
        a, b = report.metrics.get(n), champion.get(n)
        rows.append([n, _direction(n), _num(a), _num(b), _Cell(_change(n, a, b), "num")])
    if rows:
        out += _table(["metric", "better", "this model", "champion", "change"], rows)
    return out


def _change(metric: str, candidate: float | None, champion: float | None) -> str:
    if candidate is None or champion is None:
        return "—"
    delta = candidate - champion
    try:
        better = delta > 0 if higher_is_better(metric) else delta < 0
    except UnknownMetricError:
        return f"{delta:+.4g}"
    return f"{delta:+.4g} ({'same' if delta == 0 else 'better' if better else 'worse'})"


def _main_metric(metrics: dict[str, float]) -> str | None:
    return next((m for m in _UNIT_SCORES if m in metrics), None)


def _benchmarks_section(report: EvaluationReport) -> str:
    champion = report.champion.metrics if report.champion else {}
    groups, unplotted = [], []
    failed = [b.name for b in report.benchmarks if b.error]
    for bench in report.benchmarks:
        if bench.error:
            continue
        main = _main_metric(bench.metrics)
        if main is None:
            unplotted.append(bench.name)
            continue
        key = f"{BENCHMARK_PREFIX}{bench.name}.{main}"
        groups.append(
            _BarGroup(f"{bench.name} · {main}", {"candidate": bench.metrics[main], "champion": champion.get(key)})
        )
    if groups:
        body = _bar_plot(
            groups, _series_legend(report), title="Main score of each benchmark", length=_unit_scale, axis_unit=True
        )
        caption = (
            "Main score of each benchmark (the first of exact match, accuracy, token F1, contains), on a 0–1 axis."
        )
        if unplotted:
            caption += f" Not plotted (no 0–1 score): {', '.join(unplotted)}."
        if failed:
            caption += f" Could not run: {', '.join(failed)}."
    elif report.benchmarks:
        body = '<p class="note">No benchmark has a 0–1 score to plot; see the tables below.</p>'
        caption = "Benchmark scores."
    else:
        body = '<p class="note">No custom benchmark was run (none is uploaded under benchmarks/).</p>'
        caption = "Benchmark scores."
    out = [_figure("benchmarks", body, caption)]
    for bench in report.benchmarks:
        out.append(f'<section class="benchmark"><h3>{_e(bench.name)}</h3>')
        out.append(f'<p class="note">{_e(bench.kind)} · {_fmt(bench.items)} items · from {_e(bench.source_key)}</p>')
        if bench.error:
            out.append(f'<p class="error">Could not run: {_e(bench.error)}</p>')
        if bench.metrics:
            rows = []
            for m, v in sorted(bench.metrics.items()):
                key = f"{BENCHMARK_PREFIX}{bench.name}.{m}"
                rows.append([m, _direction(key), _num(v), _num(champion.get(key))])
            out.append(_table(["metric", "better", "this model", "champion"], rows))
        examples = bench.examples[:MAX_BENCHMARK_EXAMPLES]
        if examples:
            columns = list(dict.fromkeys(k for ex in examples for k in ex))
            rows_ex = [[_Cell(ex.get(c, ""), "text") for c in columns] for ex in examples]
            out.append(_table(columns, rows_ex, css="wide"))
        out.append("</section>")
    return "".join(out)


# --- tables of the evaluation -------------------------------------------------------------------


def _heldout_section(report: EvaluationReport) -> str:
    h = report.heldout
    return _table(
        ["split", "documents", "tokens", "loss (nats/token)", "perplexity", "next-token accuracy"],
        [[h.split, _num(h.documents), _num(h.tokens), _num(h.loss), _num(h.perplexity), _num(h.next_token_accuracy)]],
    )


def _qa_section(report: EvaluationReport) -> str:
    qa = report.qa
    out = [
        _table(
            ["prompts", "exact match", "token F1"],
            [[_num(qa.items), _num(qa.exact_match), _num(qa.token_f1)]],
        )
    ]
    if qa.by_rule:
        rows = [[rule, _num(s.items), _num(s.exact_match), _num(s.token_f1)] for rule, s in sorted(qa.by_rule.items())]
        out.append("<h3>By rule</h3>" + _table(["rule", "prompts", "exact match", "token F1"], rows))
    if qa.examples:
        shown = qa.examples[:MAX_QA_EXAMPLES]
        rows_ex = [
            [
                ex.rule,
                _Cell(ex.prompt, "text"),
                _Cell(ex.answer, "text"),
                _Cell(ex.prediction, "text"),
                "yes" if ex.exact_match else "no",
                _num(ex.token_f1),
            ]
            for ex in shown
        ]
        out.append(f"<h3>Examples (first {len(shown)} of {len(qa.examples)})</h3>")
        out.append(
            _table(["rule", "prompt", "expected", "model's answer", "exact", "F1"], rows_ex, css="wide examples")
        )
    return "".join(out)


def _hallucination_section(report: EvaluationReport) -> str:
    h = report.hallucination
    out = [
        _table(
            ["factual tokens", "unsupported", "hallucination rate ↓", "domain-vocabulary score ↑"],
            [[_num(h.factual_tokens), _num(h.unsupported), _num(h.rate), _num(h.domain_vocab_score)]],
        )
    ]
    if h.by_kind:
        rows = [
            [kind, _num(c.total), _num(c.unsupported), _num(c.unsupported / c.total if c.total else None)]
            for kind, c in sorted(h.by_kind.items())
        ]
        out.append("<h3>By kind</h3>" + _table(["kind", "generated", "unsupported", "share unsupported"], rows))
    if h.examples:
        items = "".join(f"<li>{_e(x)}</li>" for x in h.examples[:MAX_HALLUCINATION_EXAMPLES])
        out.append(f'<h3>Unsupported examples</h3><ul class="examples">{items}</ul>')
    return "".join(out)


def _meta(report: EvaluationReport) -> str:
    rows = [
        ("model version", report.model_version),
        ("family", report.family),
        ("evaluation", report.evaluation_id),
        ("dataset version", report.dataset_version or "—"),
        ("tokenizer version", report.tokenizer_version or "—"),
        ("champion at evaluation", report.champion.model_version if report.champion else "none"),
        ("created", report.created_at.isoformat()),
        ("evaluation time", f"{report.elapsed_s:.1f} s"),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="meta"><tbody>{body}</tbody></table>'


def render_html(report: EvaluationReport) -> str:
    """The report as one HTML page that needs nothing else: no network, no script, plots in inline SVG.

    Example
    -------
    >>> html = render_html(report)  # doctest: +SKIP
    >>> 'data-plot="loss"' in html  # doctest: +SKIP
    True
    """
    title = f"Evaluation of {report.model_version}"
    sections = [
        ("metrics", "Headline metrics", _metrics_section(report)),
        ("training", "Training", _loss_section(report)),
        ("heldout", "Held-out documents", _heldout_section(report)),
        ("qa", "Questions and answers from held-out documents", _qa_section(report)),
        ("hallucination", "Hallucination", _hallucination_section(report)),
        ("benchmarks", "Custom benchmarks", _benchmarks_section(report)),
    ]
    body = "".join(f'<section id="{sid}"><h2>{_e(h)}</h2>{content}</section>' for sid, h, content in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="docllm evaluation report, schema {report.schema_version}">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><header><h1>{_e(title)}</h1>{_meta(report)}</header>{body}</body></html>\n"
    )
