"""The factual-token patterns, support rules, hallucination rate and domain vocabulary on hand-made text."""

from __future__ import annotations

import pickle

import pytest

from docllm.evaluation.grounding import (
    DomainVocabulary,
    domain_vocab_score,
    domain_vocabulary,
    factual_tokens,
    hallucination_rate,
    quantity,
    unsupported_tokens,
)


def kinds(text: str) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in factual_tokens(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Store it in Amazon S3.", [("service", "Amazon S3")]),
        ("Use AWS Identity and Access Management.", [("service", "AWS Identity and Access Management")]),
        ("Move it to Amazon S3 Glacier Deep Archive", [("service", "Amazon S3 Glacier Deep Archive")]),
        ("Your AWS account", []),
        ("AWS and Amazon S3", [("service", "Amazon S3")]),
        ("Amazon S3 PutObject calls", [("service", "Amazon S3"), ("api_action", "PutObject")]),
        ("Call GetBucketPolicy or ListObjectsV2", [("api_action", "GetBucketPolicy"), ("api_action", "ListObjectsV2")]),
        ("Allow s3:GetObject and s3:* and s3:Put*", [("api_action", "s3:GetObject"), ("api_action", "s3:*"),
                                                  ("api_action", "s3:Put*")]),
        ("CloudFront and Settings are not actions", []),
        ("Pass --bucket and --sse-kms-key-id", [("cli_flag", "--bucket"), ("cli_flag", "--sse-kms-key-id")]),
        ("Run aws s3api put-object --key a", [("cli_command", "aws s3api put-object"), ("cli_flag", "--key")]),
        ("arn:aws:s3:::DOC-EXAMPLE-BUCKET/* is the ARN.", [("arn", "arn:aws:s3:::DOC-EXAMPLE-BUCKET/*")]),
        ("See https://docs.aws.amazon.com/s3/index.html.", [("url", "https://docs.aws.amazon.com/s3/index.html")]),
        ("Set max_keys in boto3.client, e.g. here", [("code_identifier", "max_keys"),
                                                    ("code_identifier", "boto3.client")]),
        ("Up to 5 TB, 3,500 requests, 99.99% and 1024 KB",
         [("number", "5 TB"), ("number", "3,500 requests"), ("number", "99.99%"), ("number", "1024 KB")]),
        ("Step 2 in us-east-1 on a 2xlarge with S3 since 2006-03-01", []),
        ("It takes 15 minutes for 12 objects", [("number", "15 minutes"), ("number", "12 objects")]),
    ],
)  # fmt: skip
def test_factual_tokens_find_each_kind(text: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(text) == expected


def test_factual_token_spans_point_at_the_text() -> None:
    text = "Amazon S3 objects are at most 5 TB; see --bucket."
    for token in factual_tokens(text):
        assert text[token.start : token.end] == token.text


def test_overlaps_keep_the_longest_match_starting_first() -> None:
    # The URL contains a dotted name and a number; the ARN contains "s3:".
    assert kinds("https://s3.amazonaws.com/bucket/5 arn:aws:s3:::b") == [
        ("url", "https://s3.amazonaws.com/bucket/5"),
        ("arn", "arn:aws:s3:::b"),
    ]


def test_quantities_normalise_units_and_separators() -> None:
    assert quantity("5 TB") == quantity("5120 GB") == quantity("5 terabytes")
    assert quantity("15 minutes") == quantity("900 seconds")
    assert quantity("3,500") == quantity("3500")
    assert quantity("100 buckets") == quantity("100 bucket")
    assert quantity("5 TB") != quantity("5 GB")


def test_restated_facts_are_supported() -> None:
    assert unsupported_tokens("Amazon S3 supports 5 TB objects", ["objects up to 5 TB in Amazon S3"]) == []


def test_services_are_compared_case_insensitively() -> None:
    assert unsupported_tokens("Use AMAZON  s3 here", ["Objects in Amazon S3."]) == []


@pytest.mark.parametrize(
    "invented",
    ["Amazon Glacierx", "PutBucketFoo", "--no-such-flag", "7 TB", "s3:GetObjectx", "arn:aws:s3:::other",
     "aws s3api get-nothing", "my_param"],
)  # fmt: skip
def test_invented_facts_are_unsupported(invented: str) -> None:
    source = (
        "Amazon S3 objects are up to 5 TB. Call PutObject with --bucket and my_parameter, "
        "grant s3:GetObject on arn:aws:s3:::bucket, run aws s3api put-object."
    )
    assert [t.text for t in unsupported_tokens(f"It uses {invented} now.", [source])] == [invented]


def test_identifiers_must_match_exactly_and_whole() -> None:
    source = "Call PutObjectAcl with --bucket-name."
    assert [t.text for t in unsupported_tokens("Call PutObject with --bucket.", [source])] == ["PutObject", "--bucket"]
    assert unsupported_tokens("Call PutObjectAcl.", ["grant s3:PutObjectAcl"]) == []


def test_a_bare_number_is_supported_by_any_source_number_of_that_value() -> None:
    assert unsupported_tokens("about 1,000", ["up to 1000 buckets"]) == []
    assert [t.text for t in unsupported_tokens("1000 objects", ["up to 1000 buckets"])] == ["1000 objects"]


def test_any_of_several_sources_supports_a_token() -> None:
    assert unsupported_tokens("Amazon S3 and AWS KMS", ["Amazon S3 stores", "keys in AWS KMS"]) == []


def test_hallucination_rate_counts_by_kind_and_keeps_examples() -> None:
    result = hallucination_rate(
        [
            ("Amazon S3 objects reach 7 TB.", ["Amazon S3 objects reach 5 TB."]),
            ("Use --bucket.", ["the --bucket flag"]),
            ("nothing factual here", ["whatever"]),
        ]
    )
    assert (result.factual_tokens, result.unsupported, result.rate) == (3, 1, pytest.approx(1 / 3))
    assert result.by_kind["number"].model_dump() == {"total": 1, "unsupported": 1}
    assert result.by_kind["cli_flag"].model_dump() == {"total": 1, "unsupported": 0}
    assert result.examples == ["…Amazon S3 objects reach [7 TB].…"]


def test_hallucination_rate_is_none_without_factual_tokens() -> None:
    assert hallucination_rate([("just words", ["source"])]).rate is None
    assert hallucination_rate([]).rate is None


def test_domain_vocabulary_score_is_the_share_of_known_words() -> None:
    vocab = domain_vocabulary(["Amazon S3 stores objects in buckets with put-object."])
    assert "put-object" in vocab and "s3" not in vocab
    assert domain_vocab_score(["stores flurbs in buckets"], vocab) == pytest.approx(2 / 3)  # 'in' is too short
    assert domain_vocab_score(["a b"], vocab) is None


def test_domain_vocabulary_cap_keeps_the_most_frequent_types() -> None:
    vocab = domain_vocabulary(["alpha alpha beta gamma gamma gamma", "delta"], max_types=2)
    assert vocab.words == ("alpha", "gamma") and vocab.truncated


def test_domain_vocabulary_round_trips_through_json_and_pickle() -> None:
    vocab = domain_vocabulary(["buckets and objects"])
    again = DomainVocabulary.model_validate_json(vocab.model_dump_json())
    assert again == vocab and "objects" in again
    assert "buckets" in pickle.loads(pickle.dumps(vocab))
