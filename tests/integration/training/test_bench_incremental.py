"""``bench.incremental --quick``: the benchmark's whole path (v1 champion, full v2, continue v2 from the
champion's export) runs and its figures hang together. The figures themselves are docs/benchmarks.md's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.incremental.run import QUICK, Settings, run

pytestmark = [pytest.mark.corpus, pytest.mark.slow]


def test_the_quick_benchmark_continues_from_the_champion_at_a_quarter_of_the_cost(corpus_dir: Path) -> None:
    result = run(Settings(**QUICK, budget_share=0.25, learning_rate_share=0.5, threads=1))
    rows = result["rows"]
    full, cont, champion = rows["full v2"], rows["continue v2"], rows["full v1 (champion)"]
    assert cont["steps"] == round(QUICK["steps"] * 0.25) and full["steps"] == QUICK["steps"]
    assert result["cost_ratio_tokens"] == pytest.approx(0.25)
    assert result["corpus"]["new_documents"] == QUICK["new_docs"]
    assert result["corpus"]["v2_train_tokens"] > result["corpus"]["v1_train_tokens"]
    assert 0.9 < result["corpus"]["v1_tokenizer_coverage_of_v2"] <= 1.0
    # Continued from the champion, not from scratch: after a quarter of the steps its loss is near the
    # full runs' (a random init after 6 steps sits near ln(512) = 6.2).
    assert cont["val_loss"] < champion["val_loss"] + 0.2 and cont["val_loss"] < 5.6
    assert result["val_loss_gap"] == pytest.approx((cont["val_loss"] - full["val_loss"]) / full["val_loss"])
