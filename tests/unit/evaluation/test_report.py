"""The evaluation report: its JSON (canonical, no NaN), its headline metrics, and its self-contained HTML page."""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from itertools import pairwise

import pytest

from docllm.evaluation.html import MAX_PLOT_POINTS, downsample, render_html
from docllm.evaluation.report import (
    HIGHER_IS_BETTER,
    BenchmarkResult,
    ChampionComparison,
    EvaluationReport,
    HallucinationSummary,
    HeldOut,
    InvalidReportError,
    KindCount,
    QAExample,
    QAResult,
    RuleScore,
    TrainingPoint,
    TrainingSummary,
    UnknownMetricError,
    from_json,
    headline_metrics,
    higher_is_better,
    to_json,
)

HEADLINE_NAMES = {
    "perplexity",
    "heldout_loss",
    "next_token_accuracy",
    "qa_exact_match",
    "qa_token_f1",
    "hallucination_rate",
    "domain_vocab_score",
}

SCRIPT = "<script>alert('x')</script>"


def sample_history(points: int = 500, val_every: int = 25) -> list[TrainingPoint]:
    """A plausible run: the loss falls from ~10 towards ~3, validation a little above training."""
    history = []
    for i in range(points):
        step = (i + 1) * 10
        train = 3.0 + 7.0 * math.exp(-i / 80) + 0.05 * math.sin(i)
        val = 3.2 + 7.0 * math.exp(-i / 80) if i % val_every == val_every - 1 else None
        history.append(TrainingPoint(step=step, tokens=step * 2048, train_loss=train, val_loss=val, lr=6e-4))
    return history


def sample_report(*, history_points: int = 500, champion: bool = True, prompt: str = SCRIPT) -> EvaluationReport:
    """A full report with hostile user text in every place that user text can reach."""
    examples = [
        QAExample(
            rule="cloze-number" if i % 2 else "heading-section",
            prompt=f"{prompt} The maximum object size in Amazon S3 is ___ (#{i})",
            answer="5 TB",
            prediction="5 TB" if i % 3 else "5 GB <b>bold</b>",
            exact_match=bool(i % 3),
            token_f1=1.0 if i % 3 else 0.5,
        )
        for i in range(14)
    ]
    return EvaluationReport.assemble(
        evaluation_id="evaluate-dev-tiny-s3-20250101-abc",
        model_version="tiny-s3-20250101-0001",
        family="tiny-s3",
        dataset_version="ds-2025-01-01",
        tokenizer_version="tok-2025-01-01",
        created_at=datetime(2025, 1, 1, 12, 0, tzinfo=UTC),
        elapsed_s=42.5,
        heldout=HeldOut(documents=12, tokens=48_211, loss=3.41, perplexity=30.27, next_token_accuracy=0.412),
        qa=QAResult(
            items=120,
            exact_match=0.35,
            token_f1=0.52,
            by_rule={
                "cloze-number": RuleScore(items=60, exact_match=0.4, token_f1=0.55),
                "heading-section": RuleScore(items=60, exact_match=0.3, token_f1=0.49),
            },
            examples=examples,
        ),
        hallucination=HallucinationSummary(
            factual_tokens=300,
            unsupported=27,
            rate=0.09,
            by_kind={"service": KindCount(total=120, unsupported=5), "number": KindCount(total=180, unsupported=22)},
            domain_vocab_score=0.71,
            examples=[f"…limit of 7 TB… {SCRIPT}", "https://evil.example/pixel.png"],
        ),
        benchmarks=[
            BenchmarkResult(
                name="faq <img src=x onerror=alert(1)>",
                source_key="benchmarks/faq.jsonl",
                kind="jsonl",
                items=20,
                metrics={"exact_match": 0.45, "token_f1": 0.6},
                examples=[{"prompt": SCRIPT, "expected": "yes", "prediction": 'no" onload="x'}],
            ),
            BenchmarkResult(
                name="cli-flags",
                source_key="benchmarks/cli.yaml",
                kind="loglikelihood",
                items=10,
                metrics={"acc": 0.8, "loglikelihood": -12.5},
            ),
            BenchmarkResult(name="broken", source_key="benchmarks/bad.jsonl", kind="jsonl", items=0, error="bad row 3"),
        ],
        training=TrainingSummary(history=sample_history(history_points), metrics={"final_val_loss": 3.31})
        if history_points
        else None,
        champion=ChampionComparison(
            model_version="tiny-s3-20241201-0001",
            metrics={
                "perplexity": 34.0,
                "heldout_loss": 3.53,
                "next_token_accuracy": 0.39,
                "qa_exact_match": 0.31,
                "qa_token_f1": 0.5,
                "hallucination_rate": 0.12,
                "domain_vocab_score": 0.69,
                "benchmark.cli-flags.acc": 0.7,
            },
        )
        if champion
        else None,
    )


# --- metrics ------------------------------------------------------------------------------------


def test_headline_metrics_have_stable_names_and_leave_out_what_was_not_measured() -> None:
    report = sample_report()
    assert set(report.metrics) >= HEADLINE_NAMES
    assert report.metrics["benchmark.cli-flags.acc"] == 0.8
    assert report.metrics["benchmark.faq <img src=x onerror=alert(1)>.exact_match"] == 0.45
    assert not any(k.startswith("benchmark.broken.") for k in report.metrics)

    report.heldout = HeldOut(documents=1, tokens=5, loss=float("nan"), perplexity=float("inf"))
    report.qa = QAResult(items=0)
    report.hallucination = HallucinationSummary(factual_tokens=0, unsupported=0, domain_vocab_score=0.5)
    report.benchmarks = []
    assert headline_metrics(report) == {"domain_vocab_score": 0.5}


def test_every_headline_metric_has_a_direction() -> None:
    assert set(HIGHER_IS_BETTER) == HEADLINE_NAMES
    assert [n for n in sorted(HEADLINE_NAMES) if not higher_is_better(n)] == [
        "hallucination_rate",
        "heldout_loss",
        "perplexity",
    ]


@pytest.mark.parametrize(
    ("name", "higher"),
    [
        ("benchmark.faq.exact_match", True),
        ("benchmark.faq.token_f1", True),
        ("benchmark.faq.contains", True),
        ("benchmark.tasks.v2.acc", True),
        ("benchmark.tasks.acc_norm", True),
        ("benchmark.tasks.loglikelihood", True),
        ("benchmark.tasks.perplexity", False),
        ("benchmark.tasks.word_perplexity", False),
        ("benchmark.tasks.loss", False),
        ("benchmark.tasks.hallucination_rate", False),
    ],
)
def test_benchmark_metric_direction_follows_the_metric_name(name: str, higher: bool) -> None:
    assert higher_is_better(name) is higher


@pytest.mark.parametrize("name", ["bleu", "benchmark.faq", "benchmark.faq.accumulated", "qa_exact"])
def test_a_metric_of_unknown_direction_is_refused_rather_than_guessed(name: str) -> None:
    with pytest.raises(UnknownMetricError, match="unknown metric"):
        higher_is_better(name)


# --- JSON ---------------------------------------------------------------------------------------


def test_non_finite_numbers_become_null_and_the_json_round_trips() -> None:
    report = sample_report()
    report.heldout = HeldOut(documents=3, tokens=10, loss=float("nan"), perplexity=float("inf"))
    report.training = TrainingSummary(
        history=[TrainingPoint(step=1, tokens=64, train_loss=float("nan"), val_loss=3.0)],
        metrics={"final_train_loss": float("inf"), "final_val_loss": 3.0},
    )
    report.metrics = {**report.metrics, "perplexity": float("inf")}

    data = to_json(report)
    assert not re.search(rb"NaN|Infinity", data)
    again = from_json(data)
    assert again.heldout.loss is None and again.heldout.perplexity is None
    assert again.training is not None and again.training.history[0].train_loss is None
    assert again.training.metrics == {"final_val_loss": 3.0}
    assert "perplexity" not in again.metrics
    assert to_json(again) == data


def test_values_that_bypassed_validation_are_still_written_without_nan() -> None:
    heldout = HeldOut.model_construct(split="test", documents=1, tokens=1, loss=float("nan"), perplexity=None)
    report = sample_report()
    object.__setattr__(report, "heldout", heldout)
    assert from_json(to_json(report)).heldout.loss is None


def test_the_json_is_canonical_so_its_hash_is_stable() -> None:
    a, b = sample_report(), sample_report()
    b.metrics = dict(reversed(list(b.metrics.items())))
    assert to_json(a) == to_json(b)
    assert hashlib.sha256(to_json(a)).hexdigest() == hashlib.sha256(to_json(from_json(to_json(a)))).hexdigest()
    text = to_json(a).decode()
    assert text.startswith('{"benchmarks":') and "\n" not in text
    assert '"schema_version":1' in text


def test_a_report_with_unknown_fields_or_bad_json_is_refused() -> None:
    data = to_json(sample_report()).replace(b'"schema_version":1', b'"schema_version":1,"surprise":true')
    with pytest.raises(InvalidReportError, match="surprise"):
        from_json(data)
    with pytest.raises(InvalidReportError):
        from_json(b"{not json")
    with pytest.raises(InvalidReportError, match="schema_version"):
        from_json(to_json(sample_report()).replace(b'"schema_version":1', b'"schema_version":2'))


def test_training_history_merges_train_and_validation_records_of_a_step() -> None:
    rows = [
        {"step": 10, "kind": "train", "loss": 4.0, "lr": 1e-3, "tokens_seen": 640},
        {"step": 20, "kind": "train", "loss": 3.5, "lr": 9e-4, "tokens_seen": 1280},
        {"step": 20, "kind": "val", "loss": 3.7, "lr": 9e-4, "tokens_seen": 1280},
        {"step": 30, "kind": "train", "loss": float("nan"), "lr": 8e-4, "tokens_seen": 1920},
    ]
    summary = TrainingSummary.from_log_records(rows, {"final_val_loss": 3.7})
    assert [(p.step, p.tokens, p.train_loss, p.val_loss) for p in summary.history] == [
        (10, 640, 4.0, None),
        (20, 1280, 3.5, 3.7),
        (30, 1920, None, None),
    ]
    assert summary.metrics == {"final_val_loss": 3.7}


# --- HTML ---------------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Everything of the page that a browser could fetch or run: tags, attributes, style text; and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._in:
            del self._in[len(self._in) - 1 - self._in[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        (self.styles if self._in and self._in[-1] == "style" else self.text).append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


# Tags that fetch, embed or run something; attributes that point at a resource.
FETCHING_TAGS = {"script", "link", "img", "iframe", "object", "embed", "base", "audio", "video", "source", "image"}
URL_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data", "background"}


def test_the_page_refers_to_nothing_outside_itself() -> None:
    # User text carrying URLs and markup is fine as text; it must never become a tag or an attribute.
    page = parse(render_html(sample_report(prompt=f'{SCRIPT} see https://evil.example/a.png <img src="http://x/y">')))
    assert not {tag for tag, _ in page.tags} & FETCHING_TAGS
    for tag, attrs in page.tags:
        assert not {a for a in attrs if a.startswith("on")}, tag  # no event handlers
        for name, value in attrs.items():
            assert name not in URL_ATTRIBUTES or value.startswith(("#", "data:")), (tag, name, value)
            assert "://" not in value and "url(" not in value.lower(), (tag, name, value)
    style = "".join(page.styles)
    assert style and "url(" not in style and "@import" not in style and "://" not in style
    csp = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == ["default-src 'none'; style-src 'unsafe-inline'; img-src data:"]
    assert "https://evil.example/a.png" in "".join(page.text)  # present, but only as text


def test_user_text_is_escaped_and_shown_verbatim() -> None:
    html = render_html(sample_report())
    page = parse(html)
    text = "".join(page.text)
    assert SCRIPT in text  # the reader sees the prompt as written…
    assert "<script" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html  # …because it was escaped
    assert "faq <img src=x onerror=alert(1)>" in text
    assert 'no" onload="x' in text
    assert not [t for t, a in page.tags if "onload" in a]


def test_each_plot_has_its_hook_series_and_accessible_name() -> None:
    page = parse(render_html(sample_report()))
    figures = [a["data-plot"] for t, a in page.tags if t == "figure" and a.get("class") == "plot"]
    assert figures == ["metrics", "loss", "benchmarks"]
    svgs = [a for t, a in page.tags if t == "svg"]
    assert len(svgs) == 3 and all(a["role"] == "img" and a["aria-label"] for a in svgs)
    series = [a.get("data-series") for t, a in page.tags if t in {"path", "rect"} and "data-series" in a]
    assert series.count("train") == 1 and series.count("validation") == 1
    # metrics plot: one candidate and one champion bar per headline metric; benchmarks: faq and cli-flags
    assert series.count("candidate") == len(HEADLINE_NAMES) + 2
    assert series.count("champion") == len(HEADLINE_NAMES) + 2


def test_the_page_prints_values_directions_and_tables() -> None:
    text = "".join(parse(render_html(sample_report())).text)
    for expected in (
        "30.27",  # perplexity
        "34",  # the champion's
        "↓ lower",
        "↑ higher",
        "cloze-number",
        "Examples (first 10 of 14)",
        "share unsupported",
        "Could not run: bad row 3",
        "tokens seen",
        "2.5M",  # x ticks in round token counts
        "-3.73 (better)",  # perplexity fell
        "+0.04 (better)",  # exact match rose
        "training loss",
        "validation loss",
        "ds-2025-01-01",
    ):
        assert expected in text, expected


def test_without_history_or_champion_the_page_says_so_instead_of_plotting() -> None:
    page = parse(render_html(sample_report(history_points=0, champion=False)))
    text = "".join(page.text)
    assert "No training history was recorded" in text
    assert "no champion yet" in text
    assert not [a for t, a in page.tags if a.get("data-series") in {"train", "validation", "champion"}]
    assert [a["data-plot"] for t, a in page.tags if t == "figure"] == ["metrics", "loss", "benchmarks"]


def test_a_history_with_only_training_losses_draws_one_curve() -> None:
    report = sample_report()
    report.training = TrainingSummary(
        history=[TrainingPoint(step=s, tokens=0, train_loss=5 - s / 10) for s in range(5)]
    )
    page = parse(render_html(report))
    assert [a["data-series"] for t, a in page.tags if t == "path"] == ["train"]
    assert "step" in "".join(page.text)  # no token counts: plotted against steps


def test_benchmarks_without_a_score_in_0_to_1_are_listed_not_plotted() -> None:
    report = sample_report()
    report.benchmarks = [
        BenchmarkResult(
            name="ll", source_key="benchmarks/ll.yaml", kind="loglikelihood", items=4, metrics={"loglikelihood": -3.0}
        )
    ]
    page = parse(render_html(report))
    candidate_bars = [a for t, a in page.tags if t == "rect" and a.get("data-series") == "candidate"]
    assert len(candidate_bars) == len(HEADLINE_NAMES)  # the metrics plot's only
    text = "".join(page.text)
    assert "No benchmark has a 0–1 score to plot" in text and "-3" in text


def test_downsampling_is_even_deterministic_and_keeps_the_ends() -> None:
    points = list(range(1000))
    thinned = downsample(points, 100)
    assert len(thinned) == 100 and thinned[0] == 0 and thinned[-1] == 999
    assert thinned == downsample(points, 100)
    gaps = {b - a for a, b in pairwise(thinned)}
    assert gaps <= {10, 11}
    assert downsample(points[:50], 100) == points[:50]


@pytest.mark.parametrize("history_points", [500, 20_000])
def test_the_page_stays_small_however_long_the_history(history_points: int) -> None:
    html = render_html(sample_report(history_points=history_points))
    assert len(html.encode()) < 200_000
    train_path = re.search(r'<path data-series="train" d="([^"]+)"', html)
    assert train_path is not None
    assert train_path.group(1).count("L") + 1 <= MAX_PLOT_POINTS


def test_rendering_is_deterministic() -> None:
    assert render_html(sample_report()) == render_html(sample_report())
