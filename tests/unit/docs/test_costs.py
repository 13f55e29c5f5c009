"""The cost tables of docs/operating-aws.md: recomputed from families.yaml and the template (docs/gen_costs.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from docllm.training.families import load_families
from tests.unit.docs.helpers import DOCS, load_generator

gen_costs = load_generator("gen_costs")


def family(**overrides: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "name": "f",
        "method": "pretrain",
        "preset": "124m",
        "instance_type": "ml.g5.2xlarge",
        "instance_count": 1,
        "spot": False,
        "budget": SimpleNamespace(minutes=60.0),
        "max_runtime_s": 6300,
        "retrain": SimpleNamespace(on_change=True, min_interval_hours=24.0),
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def test_the_committed_block_is_what_the_families_and_template_give() -> None:
    families, template = gen_costs.load_inputs()
    current = (DOCS / "operating-aws.md").read_text(encoding="utf-8")
    expected = gen_costs.replace_block(current, gen_costs.render_block(families, template))
    assert current == expected, "docs/operating-aws.md costs are stale: run .venv/bin/python docs/gen_costs.py"


def test_every_configured_family_has_a_row() -> None:
    text = (DOCS / "operating-aws.md").read_text(encoding="utf-8")
    block = text.split(gen_costs.BEGIN, 1)[1].split(gen_costs.END, 1)[0]
    for name in load_families():
        assert f"| `{name}` |" in block, name


def test_on_demand_cost_is_price_times_instances_times_budget_hours() -> None:
    price = gen_costs.TRAINING_USD_PER_HOUR["ml.g5.2xlarge"]
    cost = gen_costs.family_cost(family(instance_count=2))
    assert cost.per_run == pytest.approx(price * 2 * 1.0)
    assert cost.per_run_ceiling == pytest.approx(price * 2 * 6300 / 3600)


def test_spot_applies_the_assumed_saving_to_every_figure() -> None:
    on_demand = gen_costs.family_cost(family())
    spot = gen_costs.family_cost(family(spot=True))
    keep = 1 - gen_costs.SPOT_SAVING
    assert spot.per_run == pytest.approx(on_demand.per_run * keep)
    assert spot.per_run_ceiling == pytest.approx(on_demand.per_run_ceiling * keep)


def test_runs_a_month_follow_the_minimum_interval_and_only_for_families_that_retrain_on_change() -> None:
    cost = gen_costs.family_cost(family(retrain=SimpleNamespace(on_change=True, min_interval_hours=168.0)))
    assert cost.runs_per_month == math.floor(720 / 168) == 4
    assert cost.month_ceiling == pytest.approx(cost.per_run_ceiling * 4)
    on_request = gen_costs.family_cost(family(retrain=SimpleNamespace(on_change=False, min_interval_hours=6.0)))
    assert on_request.runs_per_month is None and on_request.month_ceiling is None


def test_bedrock_customization_is_not_priced_by_instance_time() -> None:
    cost = gen_costs.family_cost(family(method="bedrock-customization", budget=SimpleNamespace(minutes=None)))
    assert cost.per_run is None and cost.per_run_ceiling is None


def test_a_family_on_an_unpriced_instance_type_stops_the_generator() -> None:
    with pytest.raises(SystemExit, match=r"ml\.x9\.huge"):
        gen_costs.family_cost(family(instance_type="ml.x9.huge"))


def test_the_endpoint_instance_type_of_the_template_is_priced() -> None:
    _, template = gen_costs.load_inputs()
    assert template["Parameters"]["EndpointInstanceType"]["Default"] in gen_costs.ENDPOINT_USD_PER_HOUR


def test_the_default_budget_covers_a_dev_stage_without_an_endpoint_but_not_with_one() -> None:
    # The documented reasoning behind MonthlyBudgetUsd's default (docs/operating-aws.md, "Why 500").
    _, template = gen_costs.load_inputs()
    budget = float(template["Parameters"]["MonthlyBudgetUsd"]["Default"])
    search = gen_costs.MIN_OCUS["DISABLED"] * gen_costs.OCU_USD_PER_HOUR * gen_costs.HOURS_PER_MONTH
    endpoint_type = template["Parameters"]["EndpointInstanceType"]["Default"]
    endpoint = gen_costs.ENDPOINT_USD_PER_HOUR[endpoint_type] * gen_costs.HOURS_PER_MONTH
    assert search < budget < search + endpoint
