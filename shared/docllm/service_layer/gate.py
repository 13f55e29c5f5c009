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

import json
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
    superseded: bool = Field(default=False, description="a newer decision came first: this one changed nothing")
    first: bool = Field(default=False, description="the gate's first decision on this version (a new candidate)")
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


#: The metric that decides whether an approved candidate replaces the champion (lower is better):
#: approval allows a small regression (the rules' tolerances), promotion does not, so the champion
#: cannot drift worse one tolerated step at a time.
CHAMPION_METRIC = "heldout_loss"
#: The same for an Amazon Bedrock custom model, which has no held-out loss of ours: Bedrock's loss on
#: its validation.jsonl (service_layer/customize.evaluate_custom_model).
BEDROCK_CHAMPION_METRIC = "bedrock_validation_loss"


def _package_description(family: str, model_version: str, model: dict[str, Any]) -> str:
    """The registry entry's description; a Bedrock custom model's says where the model is, since the
    package holds no weights and no inference specification of ours."""
    text = f"docllm {family} model {model_version}"
    if model.get("method") == "bedrock-customization":
        text += (
            f": Amazon Bedrock custom model {model.get('custom_model_arn') or model.get('export_uri')} "
            f"(customization job {model.get('job')}, base model {model.get('base_model')}); its weights stay in "
            "Bedrock, served there with Provisioned Throughput or an on-demand custom model deployment"
        )
    return text


def champion_metrics(
    p: Platform, family: str, dataset_version: str, base_model: str = ""
) -> tuple[str | None, dict[str, float] | None, str | None]:
    """The champion, its metrics, and why they are not comparable (None when they are).

    Held-out metrics compare only on the same held-out documents: a champion trained on another
    dataset version was measured on another test split, so only absolute rules apply then."""
    champion = p.registry.aliases(family).get("champion")
    if not champion:
        return None, None, None
    model = p.state.get(MODELS_PK, champion) or {}
    if (model.get("base_model") or "") != base_model:
        # A Bedrock custom model's losses are in its base model's tokens: another base, another scale.
        return (
            champion,
            None,
            f"champion {champion} was customized from base model {model.get('base_model') or 'none'}, this "
            f"candidate from {base_model or 'none'}: losses in different tokens, so only absolute rules apply",
        )
    if model.get("dataset_version") != dataset_version:
        return (
            champion,
            None,
            (
                f"champion {champion} was evaluated on dataset {model.get('dataset_version')}, this candidate on "
                f"{dataset_version}: different held-out documents, so only absolute rules apply"
            ),
        )
    latest = latest_evaluation(p, champion)
    metrics = {**{k: float(v) for k, v in model.get("metrics", {}).items()}, **(latest or {}).get("metrics", {})}
    return champion, metrics, None


def _on_evaluation(p: Platform, ev: EvaluationCompleted) -> dict[str, Any]:
    from docllm.registry.models import PackageSpec
    from docllm.registry.rules import decide, load_gate_rules
    from docllm.service_layer.pipelines import run_cancelled

    if run_cancelled(p, ev.request_id):
        # Its pipeline run was cancelled or superseded: a model of it is never registered (not even Pending).
        return {"model": ev.model_version, "outcome": "run cancelled: not registered"}
    candidate = candidate_metrics(p, ev)
    model = p.state.get(MODELS_PK, ev.model_version) or {}
    champion, champion_values, incomparable = champion_metrics(
        p, ev.family, model.get("dataset_version", ""), model.get("base_model") or ""
    )
    if champion == ev.model_version:
        # Re-evaluating the champion: it is measured against its own absolute rules, not itself.
        champion_values, incomparable = None, None
    outcome = decide(candidate, champion_values, load_gate_rules(ev.family))
    earlier = decisions(p, ev.model_version)
    p.registry.register(
        PackageSpec(
            model_version=ev.model_version,
            family=ev.family,
            export_uri=model.get("export_uri", ""),
            report_uri=ev.report_uri,
            report_sha256=ev.report_sha256,
            metrics=candidate,
            # None, not "": a record without one (a Bedrock custom model has no tokenizer of ours).
            dataset_version=model.get("dataset_version") or None,
            tokenizer_version=model.get("tokenizer_version") or None,
            training_job=model.get("job") or None,
            evaluation_id=ev.evaluation_id,
            commit=_code(p, ev.model_version).get("commit", "unknown"),
            repository=_code(p, ev.model_version).get("repository", "") or p.settings.git_repository,
            description=_package_description(ev.family, ev.model_version, model),
        )
    )
    reasons = [o.reason for o in outcome.outcomes] + ([incomparable] if incomparable else [])
    status: Status = "Approved" if outcome.approved else "Rejected"
    person = next((d for d in reversed(earlier) if d.override and d.applied), None)
    if person is not None and person.status != status:
        # A person's decision stands until another person's: the gate records its verdict and keeps theirs.
        reasons.append(
            f"the rules say {status}, but {person.decided_by} decided {person.status} at {person.at} "
            f"({'; '.join(person.reasons)}): a person's decision stands until another review"
        )
        status = person.status
    decision = DecisionRecord(
        decision_id=ev.evaluation_id,
        model_version=ev.model_version,
        family=ev.family,
        status=status,
        decided_by="gate",
        reasons=reasons,
        evaluation_id=ev.evaluation_id,
        champion_at_decision=champion,
        request_id=ev.request_id,
        first=not any(d.decided_by == "gate" for d in earlier if d.decision_id != ev.evaluation_id),
    )
    decision = _record(p, decision)
    return _tell_registry(p, decision)


class ReviewNotAcceptedHereError(PermanentError):
    """On AWS a review is made in the model registry, where AWS records who made it."""


def _on_review(p: Platform, review: ModelReviewSubmitted) -> dict[str, Any]:
    if not p.local:
        # An event's content is whatever its publisher wrote; an identity must come from AWS itself.
        raise ReviewNotAcceptedHereError(
            "reviews on AWS are status changes in the SageMaker Model Registry (UpdateModelPackage), "
            "where AWS records the caller's identity; a 'Model Review Submitted' event is not accepted"
        )
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


def _newer_decision(p: Platform, decision: DecisionRecord) -> DecisionRecord | None:
    """A decision on the same version recorded after this one: redelivered old decisions must not
    undo it (a gate verdict that crashed before it reached the registry, then a person's review)."""
    newer = [d for d in decisions(p, decision.model_version) if d.at > decision.at and not d.superseded]
    return newer[-1] if newer else None


def _supersede(p: Platform, decision: DecisionRecord, newer: DecisionRecord) -> dict[str, Any]:
    decision.superseded = True
    p.state.put(DECISIONS_PK, decision.sk, decision.model_dump(mode="json"))
    return {"model": decision.model_version, "outcome": "superseded", "by": newer.decision_id}


def _tell_registry(p: Platform, decision: DecisionRecord) -> dict[str, Any]:
    if decision.applied:
        return {"model": decision.model_version, "outcome": "already decided", "status": decision.status}
    if (newer := _newer_decision(p, decision)) is not None:
        return _supersede(p, decision, newer)
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
    try:
        # The event may not carry the metadata: the registry knows the package by its ARN.
        package = p.registry.get(version) if version else p.registry.get_by_arn(d.ModelPackageArn)
    except NotFoundError:
        return {"package": d.ModelPackageArn, "outcome": "not a docllm model"}
    version = package.model_version
    if package.status != d.ModelApprovalStatus:
        # An older change delivered late: the registry has moved on, and its newer event will come.
        return {"model": version, "outcome": "stale", "event_status": d.ModelApprovalStatus, "now": package.status}
    decision = _decision_for(p, version, d.ModelApprovalStatus, d.ApprovalDescription)
    if decision is None:
        # Nobody asked docllm for this change: a status set in SageMaker (console, API) under someone's
        # IAM identity, which AWS records as LastModifiedBy.
        who = _who(d.LastModifiedBy) or getattr(package, "last_modified_by", None)
        stamp = d.LastModifiedTime or package.updated_at
        decision = _record(
            p,
            DecisionRecord(
                decision_id="external-" + re.sub(r"[^0-9A-Za-z]", "", str(stamp)),
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
    if (newer := _newer_decision(p, decision)) is not None:
        return _supersede(p, decision, newer)
    return _apply(p, decision)


def _who(last_modified_by: dict[str, Any] | None) -> str | None:
    """The identity in a SageMaker LastModifiedBy: a Studio user profile, else the IAM ARN."""
    if not last_modified_by:
        return None
    identity = last_modified_by.get("IamIdentity") or {}
    return str(last_modified_by.get("UserProfileName") or identity.get("Arn") or "") or None


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
    """Issue the manifest, move the aliases, and commit the outcome with its event.

    The manifest comes first: it does not depend on the aliases, and a manifest that cannot be
    issued must not leave a champion behind without one."""
    from docllm.service_layer import manifest

    family = decision.family
    issued = manifest.issue(
        p, manifest.gather(p, decision.model_version, decision.model_dump(mode="json", include=_MANIFEST_DECISION))
    )
    aliases = p.registry.aliases(family)
    champion, previous = aliases.get("champion"), aliases.get("previous_champion")
    if decision.status == "Approved" and champion != decision.model_version and _may_promote(p, decision, champion):
        after = p.registry.promote(family, decision.model_version)
        champion, previous = after.get("champion"), after.get("previous_champion")
    elif decision.status == "Rejected" and champion == decision.model_version:
        # The champion itself was rejected: the previous champion comes back if it is still approved.
        back = previous if previous and _approved(p, previous) else None
        p.registry.set_alias(family, "champion", back)
        p.registry.set_alias(family, "previous_champion", None)
        champion, previous = back, None
    elif decision.status == "Rejected" and previous == decision.model_version:
        # A rejected model is nobody's rollback target.
        p.registry.set_alias(family, "previous_champion", None)
        previous = None
    elif decision.status == "Rejected" and previous is not None and previous == champion:
        # A retry after a crash between the two alias writes of a rejected champion: finish the second.
        p.registry.set_alias(family, "previous_champion", None)
        previous = None
    decision.champion, decision.previous_champion = champion, previous
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


def _may_promote(p: Platform, decision: DecisionRecord, champion: str | None) -> bool:
    """An approval makes the model champion when it is a new candidate's first verdict or a person's
    approval — never a re-evaluation of an older approved model — and when it is at least as good as
    the champion on :data:`CHAMPION_METRIC` measured on the same held-out documents."""
    if not (decision.first or decision.override):
        return False
    if champion is None:
        return True
    model = p.state.get(MODELS_PK, decision.model_version) or {}
    _, champion_values, incomparable = champion_metrics(
        p, decision.family, model.get("dataset_version", ""), model.get("base_model") or ""
    )
    metric = BEDROCK_CHAMPION_METRIC if model.get("method") == "bedrock-customization" else CHAMPION_METRIC
    if incomparable or not champion_values or metric not in champion_values:
        return True  # nothing comparable: the newer approved model takes over
    mine = (latest_evaluation(p, decision.model_version) or {}).get("metrics", {}).get(metric)
    return mine is not None and float(mine) <= champion_values[metric]


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
    job = p.state.get(JOBS_PK, str(model.get("job") or "")) if model.get("job") else None
    if job is None:
        return {}
    record = JobRecord.model_validate(job)
    if record.context.get("provenance"):
        # A Bedrock customization job: no result.json; the code that built its data is in the record.
        return dict(json.loads(record.context["provenance"]).get("code") or {})
    try:
        result = read_result(p, record.output_uri)
    except NotFoundError:
        return {}
    return dict(result.get("provenance", {}).get("code", {}))


def decisions(p: Platform, model_version: str | None = None) -> list[DecisionRecord]:
    """Every recorded decision (of one model version), oldest first."""
    prefix = f"{model_version}#" if model_version else ""
    found = [DecisionRecord.model_validate(i) for _, i in p.state.query(DECISIONS_PK, prefix)]
    return sorted(found, key=lambda d: d.at)


__all__ = ["DECISIONS_PK", "EVALUATIONS_PK", "DecisionRecord", "decisions", "handle_gate_event"]
