"""Grounding is the evaluation's unsupported-token measure, with no unsupported token allowed."""

from __future__ import annotations

from docllm.answers.ground import check_grounding
from docllm.evaluation.grounding import unsupported_tokens
from tests.unit.answers.fakes import OBJECT_SIZE, VERSIONING


def test_an_answer_whose_facts_are_in_the_sources_is_grounded() -> None:
    g = check_grounding("Objects can be up to 5 TB; a single PUT takes 5 GB.", [OBJECT_SIZE])
    assert g.grounded and g.unsupported == [] and g.factual == ["5 TB", "5 GB"]


def test_a_made_up_number_is_unsupported() -> None:
    g = check_grounding("Objects can be up to 7 TB.", [OBJECT_SIZE])
    assert not g.grounded and g.unsupported == ["7 TB"]


def test_a_made_up_api_action_is_unsupported() -> None:
    g = check_grounding("Call PutBucketVersioningConfig to enable it.", [VERSIONING])
    assert g.unsupported == ["PutBucketVersioningConfig"]


def test_an_answer_without_factual_tokens_is_grounded() -> None:
    assert check_grounding("Open the console and choose Edit.", [VERSIONING]).grounded


def test_the_check_agrees_with_the_evaluation_measure() -> None:
    answer = "Use PutBucketVersioning on Amazon S3 for objects up to 5 TB, or 12 buckets."
    sources = [VERSIONING, OBJECT_SIZE]
    assert check_grounding(answer, sources).unsupported == [t.text for t in unsupported_tokens(answer, sources)]
