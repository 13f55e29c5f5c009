"""The HTML report in a real browser: headless Debian Chromium driven by Playwright, every request refused.

Skipped where ``/usr/bin/chromium`` or Playwright is missing. Playwright's own browser
download is never used (``executable_path`` points at the system Chromium).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from docllm.evaluation.html import render_html
from tests.unit.evaluation.test_report import sample_report

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed in this environment")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def offline_page(browser: Any) -> Iterator[tuple[Page, list[str]]]:
    """A page whose every network request is recorded and aborted.

    The page's Content-Security-Policy is bypassed, so that a reference the policy would
    have blocked still shows up here as an attempted request: the page itself must make none.
    """
    context = browser.new_context(viewport={"width": 1100, "height": 900}, java_script_enabled=False, bypass_csp=True)
    attempted: list[str] = []

    def refuse(route: Any) -> None:
        attempted.append(route.request.url)
        route.abort()

    context.route("**/*", refuse)
    page = context.new_page()
    page.on("request", lambda request: attempted.append(request.url))
    try:
        yield page, attempted
    finally:
        context.close()


def _box(page: Page, selector: str) -> dict[str, float]:
    locator = page.locator(selector)
    assert locator.count() == 1, selector
    box = locator.bounding_box()
    assert box is not None, selector
    return {"width": box["width"], "height": box["height"]}


def test_the_report_renders_its_plots_offline(offline_page: tuple[Page, list[str]], tmp_path: Path) -> None:
    page, attempted = offline_page
    page.set_content(render_html(sample_report()), wait_until="load")

    for plot in ("loss", "metrics", "benchmarks"):
        assert page.locator(f'figure.plot[data-plot="{plot}"] svg[role="img"]').count() == 1, plot
    for series in ("train", "validation"):
        box = _box(page, f'figure[data-plot="loss"] path[data-series="{series}"]')
        assert box["width"] > 100 and box["height"] > 20, (series, box)
    for series in ("candidate", "champion"):
        bars = page.locator(f'figure[data-plot="metrics"] rect[data-series="{series}"]')
        assert bars.count() == 7, series
        widths = [bars.nth(i).bounding_box() for i in range(bars.count())]
        assert all(b is not None and b["height"] > 0 for b in widths)
        assert max(b["width"] for b in widths if b is not None) > 50, series
    assert page.locator('figure[data-plot="benchmarks"] rect[data-series="candidate"]').count() == 2
    # hostile prompts stay text: no element was made from them
    assert page.locator("script, img").count() == 0
    assert "<script>alert('x')</script>" in page.locator("#qa").inner_text()

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1000 and height > 1500, (width, height)
    assert len(data) > 50_000  # a blank page compresses to a few kilobytes

    assert attempted == [], f"the page tried to reach the network: {attempted}"


def test_the_report_without_history_or_champion_shows_notes(offline_page: tuple[Page, list[str]]) -> None:
    page, attempted = offline_page
    page.set_content(render_html(sample_report(history_points=0, champion=False)), wait_until="load")
    assert "No training history was recorded" in page.locator('figure[data-plot="loss"]').inner_text()
    assert page.locator('[data-series="champion"]').count() == 0
    assert page.locator('figure[data-plot="metrics"] rect[data-series="candidate"]').count() == 7
    assert attempted == []
