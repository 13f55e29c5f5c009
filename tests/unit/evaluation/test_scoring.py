"""Answer normalisation, exact match, token F1 and the answer span on hand-made answers."""

from __future__ import annotations

import pytest

from docllm.evaluation.scoring import answer_span, contains, exact_match, normalize_tokens, token_f1


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The Amazon S3 console.", ["amazon", "s3", "console"]),
        ("`--bucket`", ["--bucket"]),
        ('"s3:GetObject",', ["s3:getobject"]),
        ("3,500 requests", ["3500", "requests"]),
        ("99.99%", ["99.99%"]),
        ("max_keys (see /docs/)", ["max_keys", "see", "/docs"]),
        ("*get* and _put_", ["get", "and", "put"]),
        ("s3:Put*", ["s3:put*"]),
        ("a an the -- ...", []),
    ],
)
def test_normalisation_keeps_identifiers_and_drops_punctuation_and_articles(text: str, tokens: list[str]) -> None:
    assert normalize_tokens(text) == tokens


def test_exact_match_ignores_case_punctuation_and_articles() -> None:
    assert exact_match("the PutObject operation.", "PutObject operation") == 1.0
    assert exact_match("--bucket", "bucket") == 0.0
    assert exact_match("5 GB", "5 TB") == 0.0


def test_token_f1_is_the_harmonic_mean_of_token_precision_and_recall() -> None:
    assert token_f1("up to 5 TB", "5 TB") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert token_f1("5 TB", "5 TB") == 1.0
    assert token_f1("nothing", "5 TB") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("", "5 TB") == 0.0


def test_contains_needs_whole_tokens_in_order() -> None:
    assert contains("The limit is 5 TB per object", "5 TB") == 1.0
    assert contains("55 TB", "5 TB") == 0.0
    assert contains("TB 5", "5 TB") == 0.0


@pytest.mark.parametrize(
    ("generated", "answer", "span"),
    [
        (" 100 buckets in each account. If you need more", "100 buckets", "100 buckets"),
        ("PutObject.\nThen more", "CreateMultipartUpload", "PutObject."),
        (
            "\n\nAmazon S3 is an object store. It scales.",
            "Amazon S3 stores objects in buckets",
            "Amazon S3 is an object store.",
        ),
        ("s3.amazonaws.com is the endpoint", "s3.amazonaws.com", "s3.amazonaws.com"),
        ("", "5 TB", ""),
    ],
)
def test_answer_span_cuts_at_line_sentence_and_answer_length(generated: str, answer: str, span: str) -> None:
    assert answer_span(generated, answer) == span


def test_a_right_answer_followed_by_more_text_scores_full_marks() -> None:
    span = answer_span(" 5 TB. Objects larger than", "5 TB")
    assert exact_match(span, "5 TB") == token_f1(span, "5 TB") == 1.0
