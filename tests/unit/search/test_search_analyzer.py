from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from docllm.search.analyzer import analyze, analyze_query


def test_action_names_keep_the_whole_identifier_and_its_parts() -> None:
    terms = analyze("s3:PutObject")
    assert terms[0] == "s3:putobject"
    assert {"s3", "putobject", "put", "object"} <= set(terms)


def test_cli_flags_match_with_or_without_dashes() -> None:
    assert {"dry-run", "dry", "run"} <= set(analyze("--dry-run"))
    assert set(analyze_query("dry run")) <= set(analyze("aws ec2 run-instances --dry-run"))


def test_version_numbers_and_service_names_are_not_split_on_digits() -> None:
    terms = analyze("EC2 and S3 on Python 3.11.2")
    assert {"ec2", "s3", "3.11.2"} <= set(terms)
    assert "ec" not in terms


def test_acronym_runs_split_before_the_next_word() -> None:
    assert {"httpserver", "http", "server"} <= set(analyze("HTTPServer"))


def test_markdown_escapes_analyze_like_the_plain_text() -> None:
    assert analyze(r"versioning\-suspended \(PUT\)") == analyze("versioning-suspended (PUT)")


def test_plain_words_are_stemmed_and_stopwords_dropped() -> None:
    assert analyze("the buckets are versioned") == ["bucket", "version"]


def test_query_terms_are_deduplicated_in_order() -> None:
    assert analyze_query("bucket Bucket buckets policy") == ["bucket", "polici"]


@given(st.text(max_size=200))
def test_any_text_analyzes_to_lowercase_terms_without_spaces(text: str) -> None:
    for term in analyze(text):
        assert term and term == term.lower() and not any(ch.isspace() for ch in term)
