"""The quality gate's rules: per-family absolute thresholds and no-regression tolerances.

Rules live in ``docllm/training/gates.yaml``, next to ``families.yaml``, versioned with
the code: ``defaults`` apply to every family; a family's entry adds rules and replaces
the default rule of the same metric, or (``inherit_defaults: false``) stands alone.

Each :class:`MetricRule` makes up to three checks, each recorded as one
:class:`RuleOutcome` with a one-line reason:

``threshold`` / ``threshold_metric``
    An absolute bound, inclusive: lower-is-better metrics must be ``<=`` it,
    higher-is-better ones ``>=``. ``threshold_metric`` takes the bound from another of
    the candidate's own metrics (``heldout_loss`` must beat ``unigram_val_loss``, the
    unigram baseline of the training summary); when that metric is absent the check is
    skipped, since there is no bound to beat.
``max_regression_abs`` / ``max_regression_rel``
    **No regression, with tolerances** (what this gate asks): against the champion, the
    candidate may be worse by at most this much (absolute, or as a fraction of the
    champion's value); both must hold when both are set. Better or equal always passes.
``min_absolute_change`` / ``min_relative_change``
    **Required improvement**, MLflow's ``MetricThreshold`` semantics: the candidate must be
    *better* than the champion by at least this much. Optional and off by default: with it,
    a candidate equal to the champion is rejected, which suits "only replace for a real
    gain" but not "keep shipping retrained models that are as good".

Without a champion (the family's first model) only the absolute checks run; the
comparisons are recorded as skipped. A metric the candidate lacks (or whose value is
not finite) fails a ``required`` rule and skips an optional one. The direction of a
metric comes from :func:`docllm.evaluation.report.higher_is_better` unless the rule sets
``greater_is_better``; a rule whose direction is unknown is refused when the file loads.

>>> rules = GateRules(family="demo", rules=[MetricRule(metric="heldout_loss", threshold=4.0, max_regression_rel=0.02)])
>>> decision = decide({"heldout_loss": 3.0}, {"heldout_loss": 2.5}, rules)
>>> decision.approved, decision.reasons[1]
(False, 'heldout_loss 3 vs champion 2.5: worse by 0.5 (20%) > 2% allowed ✗')
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from docllm.evaluation.report import UnknownMetricError, higher_is_better
from docllm.exceptions import ConfigurationError

# Floating-point slack for "equal": a tolerance of 2% must admit exactly 2%.
_EPS = 1e-12

Check = Literal["threshold", "regression", "improvement"]


class GateRulesError(ConfigurationError):
    """``gates.yaml`` is invalid; ``field`` names the family and the setting."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class MetricRule(BaseModel):
    """What one metric of a candidate must satisfy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(min_length=1, description="a key of the candidate's metrics")
    threshold: float | None = Field(default=None, description="absolute bound (inclusive)")
    threshold_metric: str | None = Field(default=None, description="take the bound from this candidate metric")
    max_regression_abs: float | None = Field(default=None, ge=0, description="allowed worsening vs the champion")
    max_regression_rel: float | None = Field(default=None, ge=0, description="the same, fraction of the champion")
    min_absolute_change: float | None = Field(default=None, gt=0, description="required improvement (MLflow)")
    min_relative_change: float | None = Field(default=None, gt=0, description="the same, fraction of the champion")
    greater_is_better: bool | None = Field(default=None, description="None: from the metric's name")
    required: bool = Field(default=True, description="a missing metric fails (True) or skips the rule (False)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.threshold is not None and self.threshold_metric is not None:
            raise ValueError("set threshold or threshold_metric, not both")
        checks = (
            self.threshold,
            self.threshold_metric,
            self.max_regression_abs,
            self.max_regression_rel,
            self.min_absolute_change,
            self.min_relative_change,
        )
        if all(c is None for c in checks):
            raise ValueError(f"rule for {self.metric!r} checks nothing: set a threshold, a tolerance or a change")
        return self

    @property
    def higher_is_better(self) -> bool:
        """The metric's direction (:class:`UnknownMetricError` when neither the rule nor the name says)."""
        if self.greater_is_better is not None:
            return self.greater_is_better
        return higher_is_better(self.metric)


class GateRules(BaseModel):
    """Every rule the gate applies to one family's candidates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str
    rules: list[MetricRule]


class RuleOutcome(BaseModel):
    """One check of one rule: passed or not, and why, in one line."""

    model_config = ConfigDict(frozen=True)

    metric: str
    check: Check
    passed: bool
    reason: str
    candidate: float | None = None
    champion: float | None = None
    threshold: float | None = Field(default=None, description="the bound or tolerance the value was held to")
    skipped: bool = Field(default=False, description="nothing to check (optional metric absent, no champion)")


class GateDecision(BaseModel):
    """The gate's verdict: approved only when every check passed."""

    model_config = ConfigDict(frozen=True)

    approved: bool
    outcomes: list[RuleOutcome]

    @property
    def reasons(self) -> list[str]:
        """Every check's reason, in rule order (what the decision record and the event carry)."""
        return [o.reason for o in self.outcomes]

    @property
    def failures(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if not o.passed]


# -- deciding ----------------------------------------------------------------------------------------
def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    rules: GateRules | Sequence[MetricRule],
) -> GateDecision:
    """Apply ``rules`` to the ``candidate``'s metrics, comparing with the ``champion``'s (``None``:
    the family has no champion yet).

    Examples
    --------
    >>> rule = MetricRule(metric="qa_token_f1", max_regression_abs=0.02)
    >>> decide({"qa_token_f1": 0.24}, {"qa_token_f1": 0.25}, [rule]).approved
    True
    >>> decide({"qa_token_f1": 0.24}, None, [rule]).approved  # nothing could be judged
    False
    """
    outcomes: list[RuleOutcome] = []
    for rule in rules.rules if isinstance(rules, GateRules) else rules:
        outcomes.extend(_apply(rule, candidate, champion))
    if all(o.skipped for o in outcomes):
        # Nothing was judged (no champion, optional metrics unmeasured): approval needs some evidence.
        outcomes.append(
            RuleOutcome(
                metric="*",
                check="threshold",
                passed=False,
                reason="no rule could judge this model (every check was skipped) ✗",
            )
        )
    return GateDecision(approved=all(o.passed for o in outcomes), outcomes=outcomes)


def _apply(rule: MetricRule, candidate: Mapping[str, float], champion: Mapping[str, float] | None) -> list[RuleOutcome]:
    name = rule.metric
    value = _finite(candidate.get(name))
    if value is None:
        shown = "" if name not in candidate else f" ({candidate[name]} is not a number it can be judged by)"
        if rule.required:
            return [RuleOutcome(metric=name, check=_first_check(rule), passed=False, reason=f"{name} missing{shown} ✗")]
        reason = f"{name} not measured{shown}: optional rule skipped"
        return [RuleOutcome(metric=name, check=_first_check(rule), passed=True, skipped=True, reason=reason)]
    higher = rule.higher_is_better
    out: list[RuleOutcome] = []
    if rule.threshold is not None or rule.threshold_metric is not None:
        out.append(_threshold(rule, value, candidate, higher))
    comparing = rule.max_regression_abs is not None or rule.max_regression_rel is not None
    improving = rule.min_absolute_change is not None or rule.min_relative_change is not None
    if comparing or improving:
        base = None if champion is None else _finite(champion.get(name))
        if base is None:
            why = "no champion to compare with" if champion is None else "the champion has no value"
            for check, on in (("regression", comparing), ("improvement", improving)):
                if on:
                    reason = f"{name} {_n(value)}: {why}, {check} check skipped"
                    out.append(
                        RuleOutcome(metric=name, check=check, passed=True, skipped=True, reason=reason, candidate=value)
                    )
        else:
            if comparing:
                out.append(_regression(rule, value, base, higher))
            if improving:
                out.append(_improvement(rule, value, base, higher))
    return out


def _threshold(rule: MetricRule, value: float, candidate: Mapping[str, float], higher: bool) -> RuleOutcome:
    name = rule.metric
    if rule.threshold_metric is not None:
        bound = _finite(candidate.get(rule.threshold_metric))
        label = f"{rule.threshold_metric} {_n(bound)}" if bound is not None else rule.threshold_metric
        if bound is None:
            if rule.required:
                # A required bound that is missing vouches for nothing: the check fails, it is not skipped.
                reason = f"{name} {_n(value)}: no {rule.threshold_metric} to compare with ✗"
                return RuleOutcome(metric=name, check="threshold", passed=False, reason=reason, candidate=value)
            reason = f"{name} {_n(value)}: no {rule.threshold_metric} to beat, threshold check skipped"
            return RuleOutcome(
                metric=name, check="threshold", passed=True, skipped=True, reason=reason, candidate=value
            )
    else:
        assert rule.threshold is not None
        bound, label = rule.threshold, f"threshold {_n(rule.threshold)}"
    passed = value >= bound - _EPS if higher else value <= bound + _EPS
    sign = ("≥" if passed else "<") if higher else ("≤" if passed else ">")
    reason = f"{name} {_n(value)} {sign} {label} {_mark(passed)}"
    return RuleOutcome(metric=name, check="threshold", passed=passed, reason=reason, candidate=value, threshold=bound)


def _regression(rule: MetricRule, value: float, base: float, higher: bool) -> RuleOutcome:
    """Worse by at most the tolerances (both, when both are set)."""
    name = rule.metric
    worse = (base - value) if higher else (value - base)  # > 0: the candidate is worse
    head = f"{name} {_n(value)} vs champion {_n(base)}"
    if worse <= _EPS:
        what = "equal" if abs(worse) <= _EPS else f"better by {_delta(-worse, base)}"
        reason = f"{head}: {what} ✓"
        return RuleOutcome(metric=name, check="regression", passed=True, reason=reason, candidate=value, champion=base)
    limits: list[tuple[bool, str, float]] = []
    if rule.max_regression_abs is not None:
        limits.append((worse <= rule.max_regression_abs + _EPS, _n(rule.max_regression_abs), rule.max_regression_abs))
    if rule.max_regression_rel is not None:
        allowed = rule.max_regression_rel * abs(base)
        limits.append((worse <= allowed + _EPS, _pct(rule.max_regression_rel), allowed))
    passed = all(ok for ok, _, _ in limits)
    # Name the limit that failed (or, when all hold, the tightest one).
    ok, shown, tolerance = next(((ok, s, t) for ok, s, t in limits if not ok), min(limits, key=lambda x: x[2]))
    reason = f"{head}: worse by {_delta(worse, base)} {'≤' if ok else '>'} {shown} allowed {_mark(passed)}"
    return RuleOutcome(
        metric=name,
        check="regression",
        passed=passed,
        reason=reason,
        candidate=value,
        champion=base,
        threshold=tolerance,
    )


def _improvement(rule: MetricRule, value: float, base: float, higher: bool) -> RuleOutcome:
    """Better by at least the required changes (MLflow's min_absolute_change / min_relative_change)."""
    name = rule.metric
    gain = (value - base) if higher else (base - value)
    needs: list[tuple[bool, str, float]] = []
    if rule.min_absolute_change is not None:
        needs.append((gain >= rule.min_absolute_change - _EPS, _n(rule.min_absolute_change), rule.min_absolute_change))
    if rule.min_relative_change is not None:
        required = rule.min_relative_change * abs(base)
        needs.append((gain >= required - _EPS, _pct(rule.min_relative_change), required))
    passed = all(ok for ok, _, _ in needs)
    ok, shown, need = next(((ok, s, t) for ok, s, t in needs if not ok), max(needs, key=lambda x: x[2]))
    change = (
        f"better by {_delta(gain, base)}"
        if gain > _EPS
        else ("equal" if abs(gain) <= _EPS else f"worse by {_delta(-gain, base)}")
    )
    head = f"{name} {_n(value)} vs champion {_n(base)}"
    reason = f"{head}: {change}, {'≥' if ok else '<'} {shown} improvement required {_mark(passed)}"
    return RuleOutcome(
        metric=name, check="improvement", passed=passed, reason=reason, candidate=value, champion=base, threshold=need
    )


def _first_check(rule: MetricRule) -> Check:
    if rule.threshold is not None or rule.threshold_metric is not None:
        return "threshold"
    if rule.max_regression_abs is not None or rule.max_regression_rel is not None:
        return "regression"
    return "improvement"


def _finite(value: float | None) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _n(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def _delta(amount: float, base: float) -> str:
    """``0.04 (16%)``: absolute, and relative to the champion where that means something."""
    return f"{_n(amount)} ({_pct(amount / abs(base))})" if base else _n(amount)


def _mark(passed: bool) -> str:
    return "✓" if passed else "✗"


# -- loading -----------------------------------------------------------------------------------------
class _FamilyRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inherit_defaults: bool = True
    rules: list[MetricRule] = Field(default_factory=list)


class _GatesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: _FamilyRules = Field(default_factory=_FamilyRules)
    families: dict[str, _FamilyRules] = Field(default_factory=dict)


def parse_gates(text: str, *, source: str = "gates.yaml") -> dict[str, GateRules]:
    """Validate a gates document; return the rules of every family it names and of ``"*"`` (the
    defaults, what unnamed families get). Errors name the family and the field."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise GateRulesError(source, f"not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise GateRulesError(source, "expected a mapping with 'defaults' and 'families'")
    try:
        parsed = _GatesFile.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        raise GateRulesError(f"{source}: " + ".".join(str(p) for p in err["loc"]), err["msg"]) from e
    out = {"*": _resolve("*", parsed.defaults, None, source)}
    for name, body in parsed.families.items():
        out[name] = _resolve(name, body, parsed.defaults, source)
    return out


def _resolve(family: str, body: _FamilyRules, defaults: _FamilyRules | None, source: str) -> GateRules:
    where = "defaults" if defaults is None else f"families.{family}"
    seen: set[str] = set()
    for i, rule in enumerate(body.rules):
        if rule.metric in seen:
            raise GateRulesError(f"{source}: {where}.rules[{i}].metric", f"{rule.metric!r} has two rules; merge them")
        seen.add(rule.metric)
        try:
            _ = rule.higher_is_better
        except UnknownMetricError as e:
            raise GateRulesError(f"{source}: {where}.rules[{i}].greater_is_better", f"{e}; set it") from e
    rules = list(body.rules)
    if defaults is not None and body.inherit_defaults:
        # A family's rule for a metric replaces the default one, in the default's place.
        own = {r.metric: r for r in body.rules}
        rules = [own.pop(r.metric, r) for r in defaults.rules] + list(own.values())
    return GateRules(family=family, rules=rules)


@cache
def _packaged() -> dict[str, GateRules]:
    text = resources.files("docllm.training").joinpath("gates.yaml").read_text(encoding="utf-8")
    return parse_gates(text)


#: A gates file used instead of the packaged one: the thresholds of the families an organisation's
#: own families file ($DOCLLM_FAMILIES_FILE) defines, or a test's.
GATES_FILE_ENV = "DOCLLM_GATES_FILE"


def load_gate_rules(family: str, path: Path | None = None) -> GateRules:
    """The rules for ``family`` from ``path``, else ``$DOCLLM_GATES_FILE``, else the packaged
    ``gates.yaml`` (the defaults when the file does not name the family)."""
    if path is None and os.environ.get(GATES_FILE_ENV):
        path = Path(os.environ[GATES_FILE_ENV])
    gates = parse_gates(path.read_text(encoding="utf-8"), source=str(path)) if path is not None else _packaged()
    rules = gates.get(family) or gates["*"]
    return GateRules(family=family, rules=rules.rules)
