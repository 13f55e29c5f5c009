"""Gate stage: decide, register, and — once the registry has changed the status — promote and attest.

Three inputs, one queue:

"Evaluation Completed"
    The family's rules (``training/gates.yaml``) against the candidate's metrics and the champion's;
    the model is registered (PendingManualApproval), the decision recorded, then the registry's status
    set to Approved or Rejected.
"Model Review Submitted"
    A person's override (``docllm approve|reject``): recorded with who and why, then applied the same way.
"SageMaker Model Package State Change"
    The registry announces the status change (SageMaker on AWS, the local registry locally). The gate
    then moves the champion alias, issues the signed, hash-chained compliance manifest, and commits the
    decision's outcome with "Model Approved" / "Model Rejected" through the outbox. A change nobody
    asked docllm for (made in the SageMaker console) is recorded as a decision of its own.

Record first, act second: a decision is stored before the registry is told, so a redelivery after a
crash finds it and re-applies it, and the state change always finds the decision that caused it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from docllm.bootstrap import Platform
from docllm.events.aws import ModelPackageStateChangeEvent
from docllm.events.contracts import (
    EvaluationCompleted,
    ModelApproved,
    ModelRejected,
    ModelReviewSubmitted,
    parse_detail,
)
from docllm.events.envelope import BusEvent
from docllm.exceptions import ConflictError, NotFoundError, PermanentError
from docllm.ports.state import Put
from docllm.records import utcnow
from docllm.service_layer.evaluate import EVALUATIONS_PK, latest_evaluation
from docllm.service_layer.jobs import MODELS_PK
from docllm.service_layer.outbox import commit

STAGE = "gate"
DECISIONS_PK = "decisions"
Status = Literal["Approved", "Rejected"]
#: What a manifest records of a decision (manifest.inputs.DecisionRecord's fields).
_MANIFEST_DECISION = {
    "decision_id",
    "model_version",
    "family",
    "status",
    "decided_by",
    "override",
    "reasons",
    "at",
    "evaluation_id",
}
_DECISION_TAG = re.compile(r"\[docllm decision ([A-Za-z0-9._:-]+)\]")


class DecisionRecord(BaseModel):
    """One decision about a model version: the gate's, a reviewer's, or one made outside docllm."""

    decision_id: str
    model_version: str
    family: str
    status: Status
    decided_by: str = Field(description="'gate', a reviewer's identity, or 'sagemaker:<who>'")
    override: bool = False
    reasons: list[str] = Field(default_factory=list)
    evaluation_id: str | None = None
    champion_at_decision: str | None = None
    request_id: str | None = None
    at: str = Field(default_factory=utcnow)
    applied: bool = Field(default=False, description="the alias moved and the manifest was issued")
    champion: str | None = None
    previous_champion: str | None = None
    manifest_uri: str | None = None
    manifest_sha256: str | None = None

    @property
    def sk(self) -> str:
        return f"{self.model_version}#{self.decision_id}"


class ModelNotRegisteredError(PermanentError):
    """A review names a model version the registry does not hold (not evaluated yet, or unknown)."""


def handle_gate_event(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    event = BusEvent.model_validate(raw)
    if event.detail_type == EvaluationCompleted.DETAIL_TYPE:
        return _on_evaluation(p, parse_detail(event, EvaluationCompleted))
    if event.detail_type == ModelReviewSubmitted.DETAIL_TYPE:
        return _on_review(p, parse_detail(event, ModelReviewSubmitted))
    return _on_state_change(p, ModelPackageStateChangeEvent.model_validate(raw))


# -- decide ---------------------------------------------------------------------------------------


def candidate_metrics(p: Platform, evaluation: EvaluationCompleted) -> dict[str, float]:
    """What the rules read: the training job's metrics (e.g. the unigram baseline) and the evaluation's."""
    model = p.state.get(MODELS_PK, evaluation.model_version) or {}
    return {**{k: float(v) for k, v in model.get("metrics", {}).items()}, **evaluation.metrics}


def champion_metrics(p: Platform, family: str) -> tuple[str | None, dict[str, float] | None]:
    champion = p.registry.aliases(family).get("champion")
    if not champion:
        return None, None
    model = p.state.get(MODELS_PK, champion) or {}
    latest = latest_evaluation(p, champion)
    metrics = {**{k: float(v) for k, v in model.get("metrics", {}).items()}, **(latest or {}).get("metrics", {})}
    return champion, metrics


def _on_evaluation(p: Platform, ev: EvaluationCompleted) -> dict[str, Any]:
    from docllm.registry.models import PackageSpec
    from docllm.registry.rules import decide, load_gate_rules

    candidate = candidate_metrics(p, ev)
    champion, champion_values = champion_metrics(p, ev.family)
    if champion == ev.model_version:
        # Re-evaluating the champion: it is measured against its own absolute rules, not itself.
        champion, champion_values = None, None
    outcome = decide(candidate, champion_values, load_gate_rules(ev.family))
    model = p.state.get(MODELS_PK, ev.model_version) or {}
    p.registry.register(
        PackageSpec(
            model_version=ev.model_version,
            family=ev.family,
            export_uri=model.get("export_uri", ""),
            report_uri=ev.report_uri,
            report_sha256=ev.report_sha256,
            metrics=candidate,
            dataset_version=model.get("dataset_version", ""),
            tokenizer_version=model.get("tokenizer_version", ""),
            training_job=model.get("job", ""),
            evaluation_id=ev.evaluation_id,
            commit=_code(p, ev.model_version).get("commit", "unknown"),
            repository=_code(p, ev.model_version).get("repository", "") or p.settings.git_repository,
            description=f"docllm {ev.family} model {ev.model_version}",
        )
    )
    decision = DecisionRecord(
        decision_id=ev.evaluation_id,
        model_version=ev.model_version,
        family=ev.family,
        status="Approved" if outcome.approved else "Rejected",
        decided_by="gate",
        reasons=[o.reason for o in outcome.outcomes],
        evaluation_id=ev.evaluation_id,
        champion_at_decision=champion,
        request_id=ev.request_id,
    )
    decision = _record(p, decision)
    return _tell_registry(p, decision)


def _on_review(p: Platform, review: ModelReviewSubmitted) -> dict[str, Any]:
    try:
        package = p.registry.get(review.model_version)
    except NotFoundError:
        raise ModelNotRegisteredError(
            f"model {review.model_version!r} is not in the registry (it is registered when its evaluation "
            "completes): see docllm models"
        ) from None
    latest = latest_evaluation(p, review.model_version)
    decision = DecisionRecord(
        decision_id=f"review-{review.request_id}",
        model_version=review.model_version,
        family=package.family,
        status="Approved" if review.decision == "approve" else "Rejected",
        decided_by=review.reviewer,
        override=True,
        reasons=[review.reason],
        evaluation_id=(latest or {}).get("evaluation_id"),
        champion_at_decision=p.registry.aliases(package.family).get("champion"),
        request_id=review.request_id,
    )
    decision = _record(p, decision)
    return _tell_registry(p, decision)


def _record(p: Platform, decision: DecisionRecord) -> DecisionRecord:
    """Store the decision unless a delivery before this one did; the stored one wins."""
    try:
        p.state.put(DECISIONS_PK, decision.sk, decision.model_dump(mode="json"), if_absent=True)
    except ConflictError:
        stored = p.state.get(DECISIONS_PK, decision.sk)
        if stored is not None:
            return DecisionRecord.model_validate(stored)
    return decision


def _tell_registry(p: Platform, decision: DecisionRecord) -> dict[str, Any]:
    if decision.applied:
        return {"model": decision.model_version, "outcome": "already decided", "status": decision.status}
    package = p.registry.get(decision.model_version)
    description = f"[docllm decision {decision.decision_id}] {decision.decided_by}: " + "; ".join(decision.reasons)
    if package.status == decision.status:
        # No status change means no state-change event: apply the decision here and now.
        return _apply(p, decision)
    p.registry.set_status(decision.model_version, decision.status, description[:1000])
    return {"model": decision.model_version, "outcome": "status set", "status": decision.status}


# -- apply ----------------------------------------------------------------------------------------


def _on_state_change(p: Platform, ev: ModelPackageStateChangeEvent) -> dict[str, Any]:
    d = ev.detail
    if d.ModelApprovalStatus == "PendingManualApproval":
        return {"package": d.ModelPackageArn, "outcome": "ignored (pending)"}
    version = d.CustomerMetadataProperties.get("docllm:model_version")
    if not version:
        return {"package": d.ModelPackageArn, "outcome": "not a docllm model"}
    decision = _decision_for(p, version, d.ModelApprovalStatus, d.ApprovalDescription)
    if decision is None:
        # Nobody asked docllm for this change: a status set in the SageMaker console, say.
        package = p.registry.get(version)
        who = (d.LastModifiedBy or {}).get("UserProfileName") or (d.LastModifiedBy or {}).get("IamIdentity", {})
        decision = _record(
            p,
            DecisionRecord(
                decision_id=f"external-{(d.LastModifiedTime or utcnow()).replace(':', '').replace('+', '')}",
                model_version=version,
                family=package.family,
                status=d.ModelApprovalStatus,
                decided_by=f"sagemaker:{who or 'outside docllm'}",
                override=True,
                reasons=[d.ApprovalDescription or "status changed in the model registry, outside docllm"],
                champion_at_decision=p.registry.aliases(package.family).get("champion"),
            ),
        )
    if decision.applied:
        return {"model": version, "outcome": "already applied"}
    return _apply(p, decision)


def _decision_for(p: Platform, version: str, status: str, description: str | None) -> DecisionRecord | None:
    """The decision that caused a state change: named in the approval description, else the newest
    unapplied decision of that status (the description is not in every event AWS sends)."""
    if description and (m := _DECISION_TAG.search(description)):
        item = p.state.get(DECISIONS_PK, f"{version}#{m.group(1)}")
        if item is not None:
            return DecisionRecord.model_validate(item)
    mine = [DecisionRecord.model_validate(i) for _, i in p.state.query(DECISIONS_PK, f"{version}#")]
    pending = [d for d in mine if d.status == status and not d.applied]
    return max(pending, key=lambda d: d.at) if pending else None


def _apply(p: Platform, decision: DecisionRecord) -> dict[str, Any]:
    """Move the aliases, issue the manifest, and commit the outcome with its event."""
    from docllm.service_layer import manifest

    family = decision.family
    aliases = p.registry.aliases(family)
    champion, previous = aliases.get("champion"), aliases.get("previous_champion")
    if decision.status == "Approved" and champion != decision.model_version:
        # An approved model passed the no-regression rules against the champion: it takes over.
        after = p.registry.promote(family, decision.model_version)
        champion, previous = after.get("champion"), after.get("previous_champion")
    elif decision.status == "Rejected" and champion == decision.model_version:
        # The champion itself was rejected: the previous champion comes back if it is still approved.
        back = previous if previous and _approved(p, previous) else None
        p.registry.set_alias(family, "champion", back)
        p.registry.set_alias(family, "previous_champion", None)
        champion, previous = back, None
    decision.champion, decision.previous_champion = champion, previous
    issued = manifest.issue(
        p, manifest.gather(p, decision.model_version, decision.model_dump(mode="json", include=_MANIFEST_DECISION))
    )
    decision.applied = True
    decision.manifest_uri, decision.manifest_sha256 = issued.uri, issued.sha256
    event_type = ModelApproved if decision.status == "Approved" else ModelRejected
    event = event_type(
        model_version=decision.model_version,
        family=family,
        decided_by=decision.decided_by,
        override=decision.override,
        reasons=decision.reasons,
        champion=champion,
        previous_champion=previous,
        manifest_uri=issued.uri,
        manifest_sha256=issued.sha256,
        request_id=decision.request_id,
    )
    commit(p, [Put(DECISIONS_PK, decision.sk, decision.model_dump(mode="json")), *issued.writes], [event])
    p.metrics.put(f"Models{decision.status}", 1, dimensions={"family": family})
    return {"model": decision.model_version, "outcome": decision.status, "champion": champion}


def _approved(p: Platform, version: str) -> bool:
    try:
        return p.registry.get(version).status == "Approved"
    except NotFoundError:
        return False


def _code(p: Platform, model_version: str) -> dict[str, Any]:
    """The code identity the training job recorded (``provenance.code`` of its result)."""
    from docllm.records import JOBS_PK, JobRecord
    from docllm.service_layer.jobs import read_result

    model = p.state.get(MODELS_PK, model_version) or {}
    job = p.state.get(JOBS_PK, model.get("job", ""))
    if job is None:
        return {}
    try:
        result = read_result(p, JobRecord.model_validate(job).output_uri)
    except NotFoundError:
        return {}
    return dict(result.get("provenance", {}).get("code", {}))


def decisions(p: Platform, model_version: str | None = None) -> list[DecisionRecord]:
    """Every recorded decision (of one model version), oldest first."""
    prefix = f"{model_version}#" if model_version else ""
    found = [DecisionRecord.model_validate(i) for _, i in p.state.query(DECISIONS_PK, prefix)]
    return sorted(found, key=lambda d: d.at)


__all__ = ["DECISIONS_PK", "EVALUATIONS_PK", "DecisionRecord", "decisions", "handle_gate_event"]
