"""Train stage, method ``continue``: start from the family's champion with a short schedule.

An incremental run trains the champion's weights further on the new dataset version, with a share
of the family's budget (``incremental.budget_share``), a lower peak learning rate
(``incremental.learning_rate_share``) and the policy's warmup (``docs/training.md``, "Incremental").
It needs the champion's tokenizer: the tokenizer stage (``service_layer/tokenizer.py``) keeps it
when it still covers the new data and records why not otherwise. A run falls back to a full
(``pretrain``) run, with the reason in the job context (and from there the model record and the
compliance manifest), when

* the family has no champion yet, or the champion's record names no export to start from;
* the run's tokenizer is not the champion's (its coverage of the new data fell below the
  threshold, so a new one was trained);
* the family's model shape changed since the champion was trained (its weights would not fit).

A continued run records ``init_from`` (the champion's version), ``init_uri`` (its export) and the
``reason`` in the context; the job records the sha256 of the weights it read (``result.init``).
Completion is the pretrain one (the job's result has the same shape): ``train.complete_job``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from docllm.bootstrap import Platform
from docllm.exceptions import NotFoundError
from docllm.ports.objects import split_uri
from docllm.service_layer.jobs import MODELS_PK
from docllm.service_layer.train import launch_pretrain

if TYPE_CHECKING:
    from docllm.training.families import ModelFamily

#: TrainConfig budget fields a continued run scales by ``incremental.budget_share``.
_BUDGETS = ("max_steps", "max_tokens", "max_epochs", "max_minutes")
#: The export's own config (docllm.model.export.CONFIG_FILE; that module needs torch, a Lambda has none).
CONFIG_FILE = "docllm_model.json"
#: Model-config fields that do not decide the weights' shapes (as in training/checkpoint.py).
_SHAPE_FREE = frozenset({"dropout", "init_std"})


def launch(
    p: Platform,
    family: ModelFamily,
    dataset_version: str,
    tokenizer_version: str,
    request_id: str,
    *,
    train_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Continue the champion on this dataset version, or run a full training with the reason why not."""
    plan = plan_continue(p, family, tokenizer_version, dataset_version)
    if plan.init_uri is None:
        return launch_pretrain(
            p,
            family,
            dataset_version,
            tokenizer_version,
            request_id,
            train_overrides=train_overrides,
            extra_context={"reason": plan.reason, "family_method": "continue", **plan.context},
        )
    return launch_pretrain(
        p,
        family,
        dataset_version,
        tokenizer_version,
        request_id,
        train_overrides=continue_overrides(family, train_overrides),
        init_uri=plan.init_uri,
        method="continue",
        extra_context={"reason": plan.reason, "family_method": "continue", **plan.context},
    )


class ContinuePlan:
    """Where a ``continue`` run starts: ``init_uri`` (None: a full run) and why, in words."""

    def __init__(self, init_uri: str | None, reason: str, context: dict[str, str] | None = None) -> None:
        self.init_uri = init_uri
        self.reason = reason
        self.context = context or {}

    def __repr__(self) -> str:
        return f"ContinuePlan(init_uri={self.init_uri!r}, reason={self.reason!r}, context={self.context!r})"


def plan_continue(p: Platform, family: ModelFamily, tokenizer_version: str, dataset_version: str) -> ContinuePlan:
    """Decide between continuing the champion and a full run (no job is started here)."""
    from docllm.service_layer.tokenizer import find_choice

    champion = p.registry.aliases(family.name).get("champion")
    if not champion:
        return ContinuePlan(None, "full run: no champion to continue from")
    model = p.state.get(MODELS_PK, champion) or {}
    export_uri = str(model.get("export_uri") or "")
    if not export_uri.startswith("s3://"):
        return ContinuePlan(None, f"full run: champion {champion} has no export to continue from")
    ctx = {"champion": champion}
    if model.get("tokenizer_version") != tokenizer_version:
        choice = find_choice(p, family.name, dataset_version)
        why = (
            choice.reason
            if choice is not None and choice.reason
            else (f"the champion's tokenizer {model.get('tokenizer_version')} is not this run's {tokenizer_version}")
        )
        return ContinuePlan(None, f"full run: {why}", ctx)
    changed = _shape_change(p, family, export_uri, model)
    if changed:
        return ContinuePlan(
            None, f"full run: the family's model shape changed since champion {champion} ({changed})", ctx
        )
    share = family.incremental.budget_share
    return ContinuePlan(
        export_uri,
        f"continued from champion {champion} with {share:g} of the budget",
        {**ctx, "init_from": champion, "init_uri": export_uri},
    )


def continue_overrides(family: ModelFamily, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The short schedule: each budget the run would have (family and request) times the budget share,
    the peak learning rate times its share, and the policy's warmup."""
    policy = family.incremental
    full = family.train_config(**(overrides or {}))
    out: dict[str, Any] = dict(overrides or {})
    for name in _BUDGETS:
        value = getattr(full, name)
        if value is None:
            continue
        scaled = value * policy.budget_share
        out[name] = max(1, round(scaled)) if name in ("max_steps", "max_tokens") else scaled
    out["learning_rate"] = full.learning_rate * policy.learning_rate_share
    out["warmup_steps"] = policy.warmup_steps
    return out


def _shape_change(p: Platform, family: ModelFamily, export_uri: str, model: dict[str, Any]) -> str:
    """The shape-defining fields in which the family's model now differs from the champion's export
    (``docllm_model.json``), in words; empty when they agree or cannot be read (the job checks again)."""
    from docllm.model.config import ModelConfig
    from docllm.tokenizer.artifacts import find_tokenizer

    tok = find_tokenizer(p.state, str(model.get("tokenizer_version")))
    try:
        bucket, key = split_uri(export_uri.rstrip("/") + "/" + CONFIG_FILE)
        theirs = json.loads(p.objects.get(bucket, key))
    except (NotFoundError, ValueError):  # no or no readable config: the job reports it, naming the file
        return ""
    if tok is None:
        return ""
    overrides: dict[str, Any] = {**family.model}
    if family.block_size is not None:
        overrides.setdefault("block_size", family.block_size)
    ours = ModelConfig.preset(family.preset, vocab_size=tok.vocab_size, variant=family.variant, **overrides)
    mine = ours.model_dump()
    differ = sorted(k for k in set(mine) | set(theirs) if k not in _SHAPE_FREE and mine.get(k) != theirs.get(k))
    return ", ".join(f"{k}: {theirs.get(k)!r} -> {mine.get(k)!r}" for k in differ)
