"""Q&A items from held-out documents: each rule on hand-made Markdown, determinism, real AWS guides."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.evaluation.qa import MAX_CLOZE_WORDS, build_qa_items, qa_candidates

DOC = """# Bucket limits

By default, you can create up to 100 buckets in each of your AWS accounts. Buckets live in Amazon S3.

```
aws s3api create-bucket --bucket DOC-EXAMPLE-BUCKET --region us-east-1
```

| Limit | Value |
| --- | --- |
| Objects | 5 TB |

## Uploading

You can call PutObject with the `--bucket` flag to upload up to 5 GB in one request.

**Large objects**
For objects over 100 MB, use CreateMultipartUpload instead.
"""


def by_rule(items: list, rule: str) -> list[tuple[str, str]]:
    return [(i.prompt, i.answer) for i in items if i.rule == rule]


def test_cloze_prompt_is_the_heading_path_and_the_text_up_to_the_target() -> None:
    items = qa_candidates("limits.md", DOC)
    assert by_rule(items, "cloze:number")[0] == (
        "# Bucket limits\n\nBy default, you can create up to",
        "100 buckets",
    )
    assert by_rule(items, "cloze:cli_flag") == [
        ("# Bucket limits\n## Uploading\n\nYou can call PutObject with the `", "--bucket"),
    ]
    assert [a for _, a in by_rule(items, "cloze:api_action")] == ["PutObject", "CreateMultipartUpload"]
    assert by_rule(items, "cloze:api_action")[1][0] == (
        "# Bucket limits\n## Uploading\n**Large objects**\n\nFor objects over 100 MB, use"
    )


def test_code_blocks_and_tables_give_no_items() -> None:
    answers = [i.answer for i in qa_candidates("limits.md", DOC)]
    assert "--region" not in answers and "5 TB" not in answers


def test_one_target_per_kind_per_sentence_the_first() -> None:
    doc = "# T\n\nYou can store 5 TB or 7 TB in Amazon S3 and Amazon EFS buckets today."
    items = qa_candidates("d.md", doc)
    assert [(i.rule, i.answer) for i in items if i.rule.startswith("cloze")] == [
        ("cloze:number", "5 TB"),
        ("cloze:service", "Amazon S3"),
    ]


def test_heading_item_asks_for_the_first_sentence_of_the_section() -> None:
    items = qa_candidates("limits.md", DOC)
    assert by_rule(items, "heading") == [
        ("# Bucket limits\n\n", "By default, you can create up to 100 buckets in each of your AWS accounts."),
        ("# Bucket limits\n## Uploading\n\n",
         "You can call PutObject with the `--bucket` flag to upload up to 5 GB in one request."),
        ("# Bucket limits\n**Large objects**\n", "For objects over 100 MB, use CreateMultipartUpload instead."),
    ]  # fmt: skip


def test_long_context_is_cut_to_the_budget_at_a_sentence_start() -> None:
    filler = "This sentence says nothing at all. " * 40
    doc = f"# T\n\n{filler}The limit is 5 TB."
    item = next(i for i in qa_candidates("d.md", doc, prompt_chars=200) if i.rule == "cloze:number")
    body = item.prompt.removeprefix("# T\n\n")
    assert len(body) <= 200 and body.startswith("This sentence") and body.endswith("The limit is")


def test_items_need_context_before_the_target() -> None:
    assert [i.rule for i in qa_candidates("d.md", "# T\n\nAmazon S3 is an object store for everyone.")] == ["heading"]


def test_building_is_deterministic_and_spread_over_documents() -> None:
    docs = [("b.md", DOC), ("a.md", DOC.replace("100 buckets", "1,000 buckets"))]
    first = build_qa_items(docs, max_items=6)
    assert first == build_qa_items(list(reversed(docs)), max_items=6)
    assert [i.doc_key for i in first] == ["a.md", "b.md"] * 3
    assert [i.rule for i in first[:6:2]] == ["heading", "cloze:service", "cloze:api_action"]
    assert len({i.id for i in first}) == 6


def test_max_per_doc_caps_each_document() -> None:
    items = build_qa_items([("a.md", DOC), ("b.md", "# B\n\nNothing.")], max_per_doc=2)
    assert [i.doc_key for i in items] == ["a.md", "a.md"]


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Q&A rules"):
        build_qa_items([], rules=["cloze:colour"])


@pytest.mark.corpus
def test_items_from_real_guides_are_deterministic_and_answered_by_their_source(corpus_dir: Path) -> None:
    from docllm.ingest.chunker import chunk_blocks
    from docllm.ingest.markdown import parse_markdown

    files = sorted((corpus_dir / "awsdocs" / "s3" / "doc_source").glob("*.md"))[::60]
    if not files:
        pytest.skip("no S3 guide pages in ../shared/corpus")
    docs = []
    for path in files:
        chunks = chunk_blocks(parse_markdown(path.read_text(encoding="utf-8")), base_path=["S3", path.stem])
        docs.append((path.name, "\n\n".join(c.text for c in chunks)))
    items = build_qa_items(docs, max_items=80)
    assert items == build_qa_items(docs, max_items=80)
    assert len(items) >= 20
    assert {i.rule for i in items} >= {"heading", "cloze:service", "cloze:number"}
    for item in items:
        assert item.answer in item.source, item
        assert item.answer.strip() and item.prompt.strip()
        if item.rule.startswith("cloze"):
            assert len(item.answer.split()) <= MAX_CLOZE_WORDS
