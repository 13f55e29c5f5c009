"""The user documentation hangs together: an index of every page, links that land, the runbooks and
the AWS guide covering what the issue asks and what the template holds."""

from __future__ import annotations

import fnmatch
import re

import pytest
from cfnlint.decode import decode

from tests.unit.docs.helpers import DOCS, REPO, anchors, links

#: Pages written for issue 19's user documentation (the others have their own owners and tests).
USER_PAGES = ["README.md", "quickstart.md", "concepts.md", "local-platform.md", "operating-aws.md", "runbooks.md"]


def test_the_index_lists_every_page_of_the_docs_folder() -> None:
    listed = {t.split("#", 1)[0] for t in links(DOCS / "README.md") if not t.startswith(("http", "#"))}
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert pages - listed == set(), "add these pages to docs/README.md"


@pytest.mark.parametrize("page", USER_PAGES)
def test_every_relative_link_of_the_user_pages_lands_on_a_file_and_heading(page: str) -> None:
    for target in links(DOCS / page):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (DOCS / path).resolve() if path else DOCS / page
        assert file.exists(), f"{page}: {target}"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page}: {target}"


def test_the_runbooks_cover_the_five_situations_the_issue_names() -> None:
    headings = anchors(DOCS / "runbooks.md")
    for needed in [
        "a-stuck-pipeline",
        "a-dead-letter-queue-with-messages",
        "an-alarm-and-a-rollback",
        "verifying-a-manifest-for-an-audit",
        "rotating-the-api-key",
    ]:
        assert needed in headings, needed


def test_the_aws_guide_has_every_section_the_issue_names() -> None:
    headings = anchors(DOCS / "operating-aws.md")
    for needed in [
        "prerequisites",
        "deploy",
        "what-each-resource-is-for",
        "costs",
        "the-cost-budget",
        "quotas-to-request",
        "first-deployment-checklist",
    ]:
        assert needed in headings, needed
    assert "sam build && .tools/sam/bin/sam deploy --guided" in (DOCS / "operating-aws.md").read_text(encoding="utf-8")


def test_every_template_resource_is_explained_in_the_aws_guide() -> None:
    text = (DOCS / "operating-aws.md").read_text(encoding="utf-8")
    section = text.split("## What each resource is for", 1)[1].split("\n## ", 1)[0]
    names = [
        n for row in section.splitlines() if row.startswith("| `") for n in re.findall(r"`([^`]+)`", row.split("|")[1])
    ]
    tpl, _ = decode(str(REPO / "template.yaml"))
    assert tpl is not None
    missing = [r for r in tpl["Resources"] if not any(fnmatch.fnmatchcase(r, n) for n in names)]
    assert missing == [], "describe these resources in docs/operating-aws.md"


def test_the_seeds_production_checklist_is_mapped_item_by_item() -> None:
    text = (DOCS / "operating-aws.md").read_text(encoding="utf-8")
    checklist = text.split("## First-deployment checklist", 1)[1]
    for item in [
        "Cost budget configured",
        "Training data prepared and validated",
        "Model evaluated",
        "Model registered",
        "Endpoint deployed and tested",
        "Monitoring enabled",
        "Security controls",
        "Documentation",
    ]:
        assert item in checklist, item
