from __future__ import annotations

import math

import pytest

from docllm.search.bm25 import BM25Scorer


def lucene_bm25(tf: float, df: int, n: int, dl: float, avgdl: float) -> float:
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / avgdl))


def test_scores_follow_the_lucene_formula() -> None:
    s = BM25Scorer()
    s.add(1, {"a": 2.0, "b": 1.0}, length=3, group=0)
    s.add(2, {"b": 1.0}, length=1, group=0)
    ((slot, score),) = s.top_k(["a"], k=5)
    assert slot == 1
    assert score == pytest.approx(lucene_bm25(2.0, 1, 2, 3, 2.0), rel=1e-5)


def test_removed_slots_no_longer_count_in_results_or_statistics() -> None:
    s = BM25Scorer()
    s.add(1, {"a": 1.0}, length=1, group=0)
    s.add(2, {"a": 1.0, "b": 1.0}, length=2, group=0)
    s.remove(1)
    ((slot, score),) = s.top_k(["a"], k=5)
    assert slot == 2
    assert score == pytest.approx(lucene_bm25(1.0, 1, 1, 2, 2.0), rel=1e-5)
    assert s.dead_fraction() == 0.5


def test_group_filter_and_ties_are_deterministic() -> None:
    s = BM25Scorer()
    for slot in (5, 3, 9):
        s.add(slot, {"a": 1.0}, length=1, group=slot % 2)
    assert [slot for slot, _ in s.top_k(["a"], k=2)] == [3, 5]
    assert s.top_k(["a"], k=5, group=7) == []


def test_a_live_slot_cannot_be_added_twice() -> None:
    s = BM25Scorer()
    s.add(1, {"a": 1.0}, length=1, group=0)
    with pytest.raises(ValueError):
        s.add(1, {"a": 1.0}, length=1, group=0)
