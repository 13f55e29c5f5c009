"""The realistic retrieval set: its shape always, its pages against ../shared/corpus when present."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bench.search.corpus import AWSDOCS
from bench.search.make_realset import TYPES, check
from bench.search.realset_questions import QUESTIONS
from docllm.search.evaluation import NOT_COVERED, load_question_file

REALSET = Path(__file__).resolve().parents[3] / "bench" / "search" / "realset.jsonl"


def test_the_set_has_200_questions_of_every_type_with_unique_ids():
    questions = load_question_file(REALSET)
    assert len(questions) >= 200
    assert len({q.id for q in questions}) == len(questions)
    counts = Counter(q.type for q in questions)
    assert set(counts) == set(TYPES)
    assert all(n >= 15 for n in counts.values()), counts


def test_each_line_names_its_evidence_and_only_not_covered_questions_expect_nothing():
    for line in REALSET.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert record["evidence"], record["id"]
        assert (record["type"] == NOT_COVERED) == (not record["expected_doc_keys"]), record["id"]


def test_two_page_questions_list_two_pages():
    assert all(len(q.expected_doc_keys) == 2 for q in load_question_file(REALSET) if q.type == "twopage")


def test_the_file_is_what_the_hand_written_questions_give():
    ids = [json.loads(line)["id"] for line in REALSET.read_text(encoding="utf-8").splitlines()]
    assert ids == [q[0] for q in QUESTIONS]


@pytest.mark.skipif(not AWSDOCS.is_dir(), reason="../shared/corpus is not present")
def test_every_listed_page_exists_and_holds_its_evidence():
    records, problems = check(QUESTIONS)
    assert problems == []
    on_file = {json.loads(line)["id"]: json.loads(line) for line in REALSET.read_text(encoding="utf-8").splitlines()}
    for record in records:
        assert record["expected_doc_keys"] == on_file[record["id"]]["expected_doc_keys"], record["id"]
        for key in record["expected_doc_keys"]:
            service, name = str(key).split("/", 1)
            assert (AWSDOCS / service / "doc_source" / name).is_file(), key
