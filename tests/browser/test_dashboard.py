"""The dashboard in a real browser: Debian's chromium driven by Playwright against the local platform.

A platform seeded by ``bench.dashboard.seed`` (a few hundred documents, a dozen model versions with
registry packages, deployments) runs with its API key; the browser signs in through the login page as
a person would. Skipped where ``/usr/bin/chromium`` or Playwright is missing (``scripts/setup.sh``
installs both); never ``playwright install``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.dashboard.seed import seed_documents, seed_models
from docllm.runtime.local import LocalRuntime
from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]
PAGES = [
    "/dashboard",
    "/dashboard/documents",
    "/dashboard/documents?status=quarantined",
    "/dashboard/documents?q=beacon/",
    "/dashboard/document?key=quillstore/guide/page-00005.md",
    "/dashboard/passage?key=quillstore/guide/page-00005.md&chunk=quillstore/guide/page-00005.md%231",
    "/dashboard/models",
    "/dashboard/models?family=iam",
    "/dashboard/benchmarks",
    "/dashboard/deployments",
    "/dashboard/incidents",
    "/dashboard/ask",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/setup.sh installs it as root)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    data = tmp_path_factory.mktemp("dashboard") / "data"
    seed_documents(data, 300)
    seed_models(data, 12)
    rt = LocalRuntime(data, template=REPO / "template.yaml", port=0, auth=True)
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture(scope="module")
def browser(runtime: LocalRuntime) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A signed-in page that records console errors, page errors and failed or refused requests."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))


@pytest.fixture()
def signed_in(browser: Any, runtime: LocalRuntime) -> Iterator[Watched]:
    context = browser.new_context(base_url=runtime.api_url)
    page = context.new_page()
    page.goto("/dashboard/login")
    page.fill("#f-key", runtime.api_key())
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard")
    try:
        yield Watched(page)
    finally:
        context.close()


def test_every_page_loads_without_console_errors(signed_in: Watched) -> None:
    for path in PAGES:
        response = signed_in.page.goto(path)
        assert response is not None and response.status == 200, path
        assert signed_in.page.locator("h1").count() == 1, path
    assert signed_in.problems == []


def test_model_pages_and_the_changelog_load(signed_in: Watched, runtime: LocalRuntime) -> None:
    assert runtime.platform is not None
    versions = [sk for sk, _ in runtime.platform.state.query_page("models", limit=2, descending=True)]
    page = signed_in.page
    page.goto("/dashboard/models")
    page.click(f"text={versions[0]}")
    assert page.locator("h1").inner_text() == "Model version"
    assert page.get_by_text("Metrics against the champion").count() == 1
    page.goto(f"/dashboard/changelog?a={versions[1]}&b={versions[0]}")
    assert page.get_by_text("Tokenizer, data and training settings").count() == 1
    assert signed_in.problems == []


def test_a_browser_without_the_session_is_sent_to_sign_in_and_a_wrong_key_is_told(
    browser: Any, runtime: LocalRuntime
) -> None:
    context = browser.new_context(base_url=runtime.api_url)
    page = context.new_page()
    page.goto("/dashboard/models")
    assert page.url.endswith("/dashboard/login")
    page.fill("#f-key", "not-the-key")
    page.click("button[type=submit]")
    assert "not the platform's API key" in page.locator("[role=alert]").inner_text()
    context.close()


def test_ask_without_a_deployed_model_says_so_clearly(signed_in: Watched) -> None:
    page = signed_in.page
    page.goto("/dashboard/ask")
    page.fill("#f-question", "How do I sync every object?")
    page.click("button[type=submit]")
    assert "No model is deployed" in page.locator("[role=alert]").inner_text()


def test_a_citation_link_opens_the_cited_passage(signed_in: Watched) -> None:
    page = signed_in.page
    page.goto("/dashboard/passage?key=quillstore/guide/page-00005.md&chunk=quillstore/guide/page-00005.md%232")
    assert "Section 2 of page 5" in page.locator("blockquote").inner_text()


def _pending_version(runtime: LocalRuntime) -> str:
    assert runtime.platform is not None
    for package in runtime.platform.registry.list():
        if package.status == "PendingManualApproval":
            return package.model_version
    raise AssertionError("the seed leaves pending versions")


def test_a_review_without_a_reason_is_refused_with_a_message(signed_in: Watched, runtime: LocalRuntime) -> None:
    page = signed_in.page
    page.goto(f"/dashboard/model?version={_pending_version(runtime)}")
    page.locator("#f-reason").evaluate("e => e.removeAttribute('required')")  # past the browser's own check
    page.click("text=Submit review")
    assert "say why" in page.locator("[role=alert]").inner_text()


def test_reject_is_submitted_and_recorded_with_who_and_why(signed_in: Watched, runtime: LocalRuntime) -> None:
    version = _pending_version(runtime)
    page = signed_in.page
    page.goto(f"/dashboard/model?version={version}")
    page.fill("#f-reason", "loss regressed on the beacon pages")
    page.select_option("#f-decision", "reject")
    page.click("text=Submit review")
    assert "Review submitted" in page.locator("[role=status]").first.inner_text()
    page.goto("/dashboard/deployments")
    row = page.locator("tr", has_text="loss regressed on the beacon pages")
    assert row.count() == 1
    assert "reject" in row.inner_text() and version in row.inner_text() and "dashboard" in row.inner_text()


def test_rollback_redeploys_the_previous_approved_version(signed_in: Watched, runtime: LocalRuntime) -> None:
    assert runtime.platform is not None
    serving = runtime.platform.state.get("endpoints", "local")
    assert serving is not None
    page = signed_in.page
    page.goto("/dashboard/deployments")
    page.fill("#f-reason-local", "p99 latency doubled after the last deploy")
    page.click("text=Roll back local to the previous approved version")
    assert "Rollback requested" in page.locator("[role=status]").first.inner_text()
    row = page.locator("tr", has_text="p99 latency doubled")
    assert row.count() == 1 and "rollback" in row.inner_text()
    recorded = [
        i for _, i in runtime.platform.state.query_page("dashboard-actions", limit=50) if i["action"] == "rollback"
    ]
    assert recorded and recorded[-1]["from_version"] == serving["model_version"]
    assert recorded[-1]["to_version"] != serving["model_version"]


def test_a_bad_benchmark_file_is_refused_with_a_message(signed_in: Watched, tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("task: [unclosed\n", encoding="utf-8")
    page = signed_in.page
    page.goto("/dashboard/benchmarks")
    page.set_input_files("#f-file", str(bad))
    page.click("button:has-text('Upload')")
    assert re.search(r"broken\.yaml", page.locator("[role=alert]").inner_text())


def test_a_form_posted_from_elsewhere_is_refused(signed_in: Watched, runtime: LocalRuntime) -> None:
    # The page's own session, but no CSRF token: what a forged form would send.
    response = signed_in.page.request.post(
        "/dashboard/rollback", form={"target": "local", "reason": "forged"}, headers={"Origin": runtime.api_url}
    )
    assert response.status == 403
    assert "another site" in response.text()
