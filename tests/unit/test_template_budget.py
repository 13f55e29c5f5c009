"""The template's cost budget (issue 19): parameterised, conditional on an e-mail, account-wide.

The seeds' production checklist asks for "cost budgets configured". The budget is created when
someone can receive its alerts (``BudgetEmail``, else ``AlarmEmail``), which ``Stage=prod`` always
has (its rule requires ``AlarmEmail``). Why it has no cost filter: docs/operating-aws.md and the
comment above ``CostBudget`` in template.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from docllm.runtime.template import read_wiring

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
BUDGET = "CostBudget"

Tpl = dict[str, Any]


@pytest.fixture(scope="module")
def template() -> Tpl:
    tpl, matches = decode(str(TEMPLATE))
    assert not matches, [str(m) for m in matches]
    assert tpl is not None
    return tpl


def evaluate(tpl: Tpl, node: Any, params: dict[str, str]) -> Any:
    """The intrinsics the budget and its conditions use, under ``params`` over the defaults."""
    if isinstance(node, list):
        return [evaluate(tpl, n, params) for n in node]
    if not isinstance(node, dict) or len(node) != 1:
        return node
    ((key, arg),) = node.items()
    values = {k: str(v.get("Default", "")) for k, v in tpl["Parameters"].items()} | params
    if key == "Ref":
        return values[arg]
    if key == "Condition":
        return evaluate(tpl, tpl["Conditions"][arg], params)
    if key == "Fn::Equals":
        return evaluate(tpl, arg[0], params) == evaluate(tpl, arg[1], params)
    if key == "Fn::Not":
        return not evaluate(tpl, arg[0], params)
    if key == "Fn::Or":
        return any(evaluate(tpl, a, params) for a in arg)
    if key == "Fn::And":
        return all(evaluate(tpl, a, params) for a in arg)
    if key == "Fn::If":
        return evaluate(tpl, arg[1] if evaluate(tpl, tpl["Conditions"][arg[0]], params) else arg[2], params)
    if key == "Fn::Sub":
        text = str(arg)
        for name, value in values.items():
            text = text.replace("${" + name + "}", value)
        return text
    return node


def budget_exists(tpl: Tpl, params: dict[str, str]) -> bool:
    return bool(evaluate(tpl, {"Condition": tpl["Resources"][BUDGET]["Condition"]}, params))


def recipients(tpl: Tpl, params: dict[str, str]) -> set[tuple[str, str]]:
    notes = tpl["Resources"][BUDGET]["Properties"]["NotificationsWithSubscribers"]
    return {(s["SubscriptionType"], evaluate(tpl, s["Address"], params)) for n in notes for s in n["Subscribers"]}


def test_the_budget_is_a_monthly_cost_budget_in_usd_of_the_parameterised_amount(template: Tpl) -> None:
    budget = template["Resources"][BUDGET]
    assert budget["Type"] == "AWS::Budgets::Budget"
    spec = budget["Properties"]["Budget"]
    assert (spec["BudgetType"], spec["TimeUnit"]) == ("COST", "MONTHLY")
    assert spec["BudgetLimit"] == {"Amount": {"Ref": "MonthlyBudgetUsd"}, "Unit": "USD"}
    amount = template["Parameters"]["MonthlyBudgetUsd"]
    assert amount["Type"] == "Number" and float(amount["Default"]) >= amount["MinValue"] >= 1


def test_the_budget_is_named_after_its_stage(template: Tpl) -> None:
    name = template["Resources"][BUDGET]["Properties"]["Budget"]["BudgetName"]
    assert evaluate(template, name, {"Stage": "prod"}) == "docllm-prod-monthly-cost"
    assert evaluate(template, name, {}) == "docllm-dev-monthly-cost"


@pytest.mark.parametrize(
    ("alarm_email", "budget_email", "expected"),
    [
        ("", "", None),
        ("ops@example.com", "", "ops@example.com"),
        ("", "finance@example.com", "finance@example.com"),
        ("ops@example.com", "finance@example.com", "finance@example.com"),
    ],
)
def test_the_budget_exists_when_someone_receives_it_and_alerts_the_budget_email_first(
    template: Tpl, alarm_email: str, budget_email: str, expected: str | None
) -> None:
    params = {"AlarmEmail": alarm_email, "BudgetEmail": budget_email}
    assert budget_exists(template, params) is (expected is not None)
    if expected is not None:
        assert recipients(template, params) == {("EMAIL", expected)}


def test_the_defaults_create_no_budget_so_a_first_dev_deploy_needs_no_address(template: Tpl) -> None:
    assert template["Parameters"]["BudgetEmail"]["Default"] == ""
    assert not budget_exists(template, {})


def test_a_production_stage_always_has_a_budget(template: Tpl) -> None:
    # The prod rule refuses an empty AlarmEmail, and the budget falls back to it.
    prod = template["Rules"]["ProdIsPrivateAndWatched"]["Assertions"]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]} in [a["Assert"] for a in prod]
    assert budget_exists(template, {"Stage": "prod", "AlarmEmail": "ops@example.com"})


def test_alerts_at_80_and_100_percent_of_actual_spend_and_100_percent_of_the_forecast(template: Tpl) -> None:
    notes = template["Resources"][BUDGET]["Properties"]["NotificationsWithSubscribers"]
    got = {
        (
            n["Notification"]["NotificationType"],
            n["Notification"]["ComparisonOperator"],
            n["Notification"]["Threshold"],
            n["Notification"]["ThresholdType"],
        )
        for n in notes
    }
    assert got == {
        ("ACTUAL", "GREATER_THAN", 80, "PERCENTAGE"),
        ("ACTUAL", "GREATER_THAN", 100, "PERCENTAGE"),
        ("FORECASTED", "GREATER_THAN", 100, "PERCENTAGE"),
    }


def test_the_budget_is_account_wide_because_run_time_resources_carry_no_stack_tags(template: Tpl) -> None:
    spec = template["Resources"][BUDGET]["Properties"]["Budget"]
    # A tag or service filter would miss training jobs and endpoints the functions create.
    assert "CostFilters" not in spec and "FilterExpression" not in spec
    doc = (REPO / "docs" / "operating-aws.md").read_text(encoding="utf-8")
    assert "account-wide" in doc and "MonthlyBudgetUsd" in doc and "BudgetEmail" in doc


def test_the_budget_parameters_are_in_the_deployment_parameter_table() -> None:
    doc = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    table = doc.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    assert "`MonthlyBudgetUsd`" in table and "`BudgetEmail`" in table


def test_the_local_runtime_reads_a_template_with_a_budget_and_runs_no_budget() -> None:
    # With a BudgetEmail only, the budget exists and nothing else changes: the runtime must ignore it.
    with_budget = read_wiring(TEMPLATE, parameters={"BudgetEmail": "finance@example.com"})
    without = read_wiring(TEMPLATE)
    assert set(with_budget.queues) == set(without.queues)
    assert set(with_budget.functions) == set(without.functions)
    assert BUDGET not in with_budget.queues and BUDGET not in with_budget.functions
