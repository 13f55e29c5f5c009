"""Pages rendered from a platform's state: what a person reads, and what bad input gets back."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.dashboard.seed import seed_documents, seed_models
from docllm.answers.models import NOT_COVERED, Answer, Citation, RetrievedDocument
from docllm.bootstrap import Platform, build_platform
from docllm.dashboard import actions, views
from docllm.settings import Settings


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Platform:
    data = tmp_path_factory.mktemp("views") / "data"
    seed_documents(data, 120)
    seed_models(data, 9)
    return build_platform(Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(data)}))


VIEW = views.View(csrf="token")


def _doc_keys(page: str) -> list[str]:
    import re

    return re.findall(r'href="/dashboard/document\?key=([^"&]+)"', page.split("Dedup log", maxsplit=1)[0])


def test_documents_are_paged_and_the_next_page_starts_after_the_last_key(platform: Platform) -> None:
    first = views.documents(platform, {}, VIEW)
    keys = [k.replace("%2F", "/") for k in _doc_keys(first)]
    assert len(keys) == 25 and 'rel="next"' in first
    second = [k.replace("%2F", "/") for k in _doc_keys(views.documents(platform, {"after": keys[-1]}, VIEW))]
    expected = [sk for sk, _ in platform.state.query("docs")][25:50]
    assert second == expected


def test_an_unknown_status_or_family_is_a_clear_message(platform: Platform) -> None:
    with pytest.raises(views.BadInput, match="unknown status 'bogus'"):
        views.documents(platform, {"status": "bogus"}, VIEW)
    with pytest.raises(views.BadInput, match="unknown family"):
        views.models(platform, {"family": "nope"}, VIEW)
    with pytest.raises(views.BadInput, match="no model"):
        views.changelog(platform, {"a": "x", "b": "y"}, VIEW)


def test_models_show_status_and_the_difference_to_the_champion(platform: Platform) -> None:
    page = views.models(platform, {}, VIEW)
    assert "badge-approved" in page and "badge-rejected" in page and "champion" in page
    assert "(+" in page or "(-" in page


def test_forms_are_offered_only_with_a_csrf_token(platform: Platform) -> None:
    version = platform.state.query_page("models", limit=1)[0][0]
    with_actions = views.model(platform, {"version": version}, VIEW)
    assert 'name="csrf" value="token"' in with_actions and "Submit review" in with_actions
    without = views.model(platform, {"version": version}, views.View(csrf=None))
    assert "Submit review" not in without and "Actions are off here" in without


def test_an_answer_links_each_citation_to_its_passage(platform: Platform) -> None:
    answer = Answer(
        question="How do I sync?",
        answer="Run quillstore sync --all [1].",
        citations=[
            Citation(
                doc_key="quillstore/guide/page-00005.md",
                version_id="v5",
                chunk_id="quillstore/guide/page-00005.md#1",
                title="Quillstore guide",
                heading_path=["Quillstore", "Sync"],
                score=3.2,
                quote="run `quillstore sync --all`",
                sentences=[0],
            )
        ],
        grounded=True,
        unsupported=[],
        abstained=False,
        model_version="tiny-s3-1",
        latency_ms=12.0,
    )
    page = views.ask(platform, {"question": "How do I sync?"}, VIEW, answer=answer)
    assert (
        "/dashboard/passage?key=quillstore%2Fguide%2Fpage-00005.md&amp;chunk=quillstore%2Fguide%2Fpage-00005.md%231"
        in page
    )
    passage = views.passage(
        platform, {"key": "quillstore/guide/page-00005.md", "chunk": "quillstore/guide/page-00005.md#1"}, VIEW
    )
    assert "Section 1 of page 5" in passage


def test_an_abstention_with_relevant_pages_lists_them_apart_from_citations(platform: Platform) -> None:
    page_five = RetrievedDocument(
        doc_key="quillstore/guide/page-00005.md", version_id="v5", title="Quillstore guide", score=3.2,
        coverage=1.0, chunk_ids=["quillstore/guide/page-00005.md#1"],
    )  # fmt: skip
    below_floor = page_five.model_copy(update={"doc_key": "quillstore/guide/page-00007.md", "coverage": 0.2})
    answer = Answer(
        question="How does sync work?", answer=NOT_COVERED, citations=[], grounded=True, unsupported=[],
        abstained=True, reason="no_answer_in_context", model_version="tiny-s3-1", latency_ms=9.0,
        retrieval=[page_five, below_floor],
    )  # fmt: skip
    page = views.ask(platform, {"question": "How does sync work?"}, VIEW, answer=answer)
    assert "Pages that may cover it" in page and "not citations" in page
    assert "/dashboard/passage?key=quillstore%2Fguide%2Fpage-00005.md" in page
    assert "page-00007" not in page  # below the relevance floor: not pointed to
    nothing = answer.model_copy(update={"reason": "no_relevant_documents"})
    assert "Pages that may cover it" not in views.ask(platform, {"question": "q"}, VIEW, answer=nothing)


def test_actions_refuse_what_cannot_be_done_and_say_why(platform: Platform) -> None:
    version = platform.state.query_page("models", limit=1)[0][0]
    with pytest.raises(actions.ActionRefused, match="say why"):
        actions.review(platform, version, "approve", "  ")
    with pytest.raises(actions.ActionRefused, match="approve or reject"):
        actions.review(platform, version, "promote", "because")
    with pytest.raises(actions.ActionRefused, match="nothing is deployed"):
        actions.rollback(platform, "bedrock", "because")
    with pytest.raises(actions.ActionRefused, match="named with letters"):
        actions.upload_benchmark(platform, "../../etc/passwd", b"x")
    with pytest.raises(actions.ActionRefused, match="empty"):
        actions.upload_benchmark(platform, "faq.jsonl", b"  ")


def test_a_review_is_committed_with_its_record(platform: Platform, tmp_path: Path) -> None:
    version = platform.state.query_page("models", limit=1, descending=True)[0][0]
    request_id = actions.review(platform, version, "reject", "regressed on beacon pages")
    recorded = [
        i for _, i in platform.state.query_page("dashboard-actions", limit=100) if i.get("request_id") == request_id
    ]
    assert recorded and recorded[0]["why"] == "regressed on beacon pages" and recorded[0]["subject"] == version
