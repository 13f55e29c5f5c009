"""Gate rules: every branch, with hand-made numbers whose right answer is known."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from docllm.registry.rules import GateRules, GateRulesError, MetricRule, decide, load_gate_rules, parse_gates

DEFAULTS = load_gate_rules("tiny-s3")
CHAMPION = {"heldout_loss": 3.0, "unigram_val_loss": 5.5, "qa_token_f1": 0.25, "hallucination_rate": 0.20}


def test_a_scrambled_weights_candidate_is_rejected_with_reasons() -> None:
    # Scrambled weights: confidently wrong, worse than the unigram baseline and the champion.
    scrambled = {"heldout_loss": 9.7, "unigram_val_loss": 5.5, "qa_token_f1": 0.0, "hallucination_rate": 0.9}
    decision = decide(scrambled, CHAMPION, DEFAULTS)
    assert not decision.approved
    assert {(o.metric, o.check) for o in decision.failures} == {
        ("heldout_loss", "threshold"),
        ("heldout_loss", "regression"),
        ("qa_token_f1", "regression"),
        ("hallucination_rate", "regression"),
    }
    assert decision.reasons[0] == "heldout_loss 9.7 > unigram_val_loss 5.5 ✗"
    assert decision.reasons[2] == "qa_token_f1 0 vs champion 0.25: worse by 0.25 (100%) > 0.02 allowed ✗"


def test_a_better_candidate_is_approved() -> None:
    better = {"heldout_loss": 2.7, "unigram_val_loss": 5.5, "qa_token_f1": 0.31, "hallucination_rate": 0.12}
    decision = decide(better, CHAMPION, DEFAULTS)
    assert decision.approved
    assert decision.reasons[0] == "heldout_loss 2.7 ≤ unigram_val_loss 5.5 ✓"
    assert decision.reasons[1] == "heldout_loss 2.7 vs champion 3: better by 0.3 (10%) ✓"


def test_worse_within_tolerance_and_equal_are_approved() -> None:
    within = {"heldout_loss": 3.06, "unigram_val_loss": 5.5, "qa_token_f1": 0.23, "hallucination_rate": 0.25}
    decision = decide(within, CHAMPION, DEFAULTS)
    assert decision.approved, decision.reasons
    assert decision.reasons[1] == "heldout_loss 3.06 vs champion 3: worse by 0.06 (2%) ≤ 2% allowed ✓"
    assert decide(dict(CHAMPION), CHAMPION, DEFAULTS).approved
    assert "equal ✓" in decide(dict(CHAMPION), CHAMPION, DEFAULTS).reasons[1]


def test_relative_regression_beyond_tolerance_is_rejected() -> None:
    decision = decide({**CHAMPION, "heldout_loss": 3.07}, CHAMPION, DEFAULTS)
    assert not decision.approved
    assert decision.failures[0].reason == "heldout_loss 3.07 vs champion 3: worse by 0.07 (2.33%) > 2% allowed ✗"
    assert decision.failures[0].threshold == pytest.approx(0.06)


def test_without_a_champion_only_absolute_checks_run() -> None:
    decision = decide({"heldout_loss": 4.0, "unigram_val_loss": 5.5}, None, DEFAULTS)
    assert decision.approved
    skipped = [o for o in decision.outcomes if o.skipped]
    assert [o.metric for o in skipped] == ["heldout_loss", "qa_token_f1", "hallucination_rate"]
    assert skipped[0].reason == "heldout_loss 4: no champion to compare with, regression check skipped"


def test_a_missing_required_metric_fails_and_an_optional_one_is_skipped() -> None:
    decision = decide({"unigram_val_loss": 5.5}, CHAMPION, DEFAULTS)
    assert not decision.approved
    assert decision.failures[0].reason == "heldout_loss missing ✗"
    assert "qa_token_f1 not measured: optional rule skipped" in decision.reasons


def test_a_non_finite_value_counts_as_missing() -> None:
    decision = decide({"heldout_loss": math.nan, "unigram_val_loss": 5.5}, None, DEFAULTS)
    assert not decision.approved
    assert decision.failures[0].reason == "heldout_loss missing (nan is not a number it can be judged by) ✗"


def test_an_absent_bound_of_a_required_threshold_fails_it() -> None:
    decision = decide({"heldout_loss": 4.0}, None, DEFAULTS)
    assert not decision.approved
    assert decision.reasons[0] == "heldout_loss 4: no unigram_val_loss to compare with ✗"


def test_an_absent_bound_of_an_optional_threshold_skips_it() -> None:
    rules = [
        MetricRule(metric="heldout_loss", threshold_metric="unigram_val_loss", required=False),
        MetricRule(metric="heldout_loss", threshold=6.0),
    ]
    decision = decide({"heldout_loss": 4.0}, None, rules)
    assert decision.approved
    assert decision.reasons[0] == "heldout_loss 4: no unigram_val_loss to beat, threshold check skipped"


def test_a_decision_where_every_check_was_skipped_is_a_rejection() -> None:
    rules = [MetricRule(metric="qa_token_f1", max_regression_abs=0.02, required=False)]
    decision = decide({"qa_token_f1": 0.3}, None, rules)
    assert not decision.approved
    assert decision.reasons[-1] == "no rule could judge this model (every check was skipped) ✗"


def test_a_champion_without_the_metric_skips_the_comparison() -> None:
    decision = decide({**CHAMPION, "qa_token_f1": 0.01}, {"heldout_loss": 3.0}, DEFAULTS)
    assert decision.approved
    assert "qa_token_f1 0.01: the champion has no value, regression check skipped" in decision.reasons


def test_higher_is_better_thresholds_and_explicit_direction() -> None:
    rules = [
        MetricRule(metric="qa_token_f1", threshold=0.2),
        MetricRule(metric="custom", threshold=1, greater_is_better=False),
    ]
    assert decide({"qa_token_f1": 0.2, "custom": 1.0}, None, rules).approved  # inclusive bounds
    decision = decide({"qa_token_f1": 0.19, "custom": 1.5}, None, rules)
    assert decision.reasons == ["qa_token_f1 0.19 < threshold 0.2 ✗", "custom 1.5 > threshold 1 ✗"]


def test_both_tolerances_must_hold() -> None:
    rule = MetricRule(metric="qa_token_f1", max_regression_abs=0.05, max_regression_rel=0.1)
    # worse by 0.04: within 0.05 absolute, beyond 10% of 0.25 (0.025)
    decision = decide({"qa_token_f1": 0.21}, {"qa_token_f1": 0.25}, [rule])
    assert not decision.approved
    assert decision.reasons == ["qa_token_f1 0.21 vs champion 0.25: worse by 0.04 (16%) > 10% allowed ✗"]


def test_required_improvement_follows_mlflow() -> None:
    rule = MetricRule(metric="qa_token_f1", min_absolute_change=0.02, min_relative_change=0.05)
    assert not decide({"qa_token_f1": 0.25}, {"qa_token_f1": 0.25}, [rule]).approved  # equal is not enough
    decision = decide({"qa_token_f1": 0.26}, {"qa_token_f1": 0.25}, [rule])
    assert decision.reasons == ["qa_token_f1 0.26 vs champion 0.25: better by 0.01 (4%), < 0.02 improvement required ✗"]
    assert decide({"qa_token_f1": 0.28}, {"qa_token_f1": 0.25}, [rule]).approved
    lower = MetricRule(metric="heldout_loss", min_relative_change=0.1)
    assert decide({"heldout_loss": 2.7}, {"heldout_loss": 3.0}, [lower]).approved
    assert not decide({"heldout_loss": 2.8}, {"heldout_loss": 3.0}, [lower]).approved


def test_a_rule_must_check_something_and_not_two_bounds() -> None:
    with pytest.raises(ValueError, match="checks nothing"):
        MetricRule(metric="heldout_loss")
    with pytest.raises(ValueError, match="not both"):
        MetricRule(metric="heldout_loss", threshold=1, threshold_metric="unigram_val_loss")


# -- gates.yaml --------------------------------------------------------------------------------------
def test_every_family_gets_rules_and_smoke_judges_held_out_loss_only() -> None:
    from docllm.training.families import load_families

    families = load_families()
    for name in families:
        assert load_gate_rules(name).rules, name
    smoke = load_gate_rules("smoke")
    assert [(r.metric, r.threshold, r.max_regression_rel) for r in smoke.rules] == [("heldout_loss", 6.3, 0.05)]
    assert decide({"heldout_loss": 5.9}, None, smoke).approved  # below uniform guessing, no champion
    assert decide({"heldout_loss": 5.0}, {"heldout_loss": 4.9}, smoke).approved  # 2% worse: tolerated
    assert not decide({"heldout_loss": 5.9}, {"heldout_loss": 4.0}, smoke).approved  # 48% worse: rejected
    assert not decide({"heldout_loss": 6.5}, None, smoke).approved  # worse than uniform guessing


def test_families_named_in_gates_yaml_exist() -> None:
    from importlib import resources

    import yaml

    from docllm.training.families import load_families

    doc = yaml.safe_load(resources.files("docllm.training").joinpath("gates.yaml").read_text())
    assert set(doc["families"]) <= set(load_families())


def test_a_family_rule_replaces_the_default_of_its_metric(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(
        "defaults:\n  rules:\n    - {metric: heldout_loss, max_regression_rel: 0.02}\n"
        "    - {metric: qa_token_f1, max_regression_abs: 0.02}\n"
        "families:\n  big:\n    rules:\n      - {metric: heldout_loss, max_regression_rel: 0.0}\n"
        "      - {metric: domain_vocab_score, threshold: 0.5}\n"
    )
    assert [(r.metric, r.max_regression_rel) for r in load_gate_rules("big", path).rules] == [
        ("heldout_loss", 0.0),
        ("qa_token_f1", None),
        ("domain_vocab_score", None),
    ]
    assert [r.metric for r in load_gate_rules("other", path).rules] == ["heldout_loss", "qa_token_f1"]
    assert isinstance(load_gate_rules("other", path), GateRules)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            "families:\n  big:\n    rules:\n      - {metric: x_score, threshold: 1}\n",
            "families.big.rules[0].greater_is_better",
        ),
        ("families:\n  big:\n    rules:\n      - {metric: heldout_loss, treshold: 1}\n", "families.big.rules.0"),
        ("families:\n  big:\n    rules:\n      - {metric: heldout_loss}\n", "families.big.rules.0"),
        (
            "defaults:\n  rules:\n    - {metric: heldout_loss, threshold: 1}\n"
            "    - {metric: heldout_loss, threshold: 2}\n",
            "defaults.rules[1].metric",
        ),
        ("- just a list\n", "gates.yaml"),
    ],
)
def test_invalid_gates_name_the_family_and_field(text: str, field: str) -> None:
    with pytest.raises(GateRulesError) as info:
        parse_gates(text)
    assert field in info.value.field
