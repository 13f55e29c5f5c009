"""A real headless browser for tests: Debian's chromium driven by Playwright (never a downloaded browser).

Every network request the page makes is refused and recorded: a self-contained page makes none.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
#: Flags for a machine with no display, no GPU and a closed network (no background connections).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def open_page(html: str, tmp_path: Path) -> Iterator[Any]:
    """The page loaded from a file:// URL; skips the test when chromium or Playwright is missing.
    Asserts on exit that the page asked for nothing outside itself."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it when run as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed")
    page_file = tmp_path / "page.html"
    page_file.write_text(html, encoding="utf-8")
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()

            def refuse(route: Any) -> None:
                url = route.request.url
                if url == page_file.as_uri():
                    route.continue_()
                else:
                    requests.append(url)
                    route.abort()

            page.route("**/*", refuse)
            page.goto(page_file.as_uri())
            yield page
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [], f"the page asked the network for {requests}"
