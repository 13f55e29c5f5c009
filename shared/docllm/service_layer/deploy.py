"""Deploy stage: "Model Approved" (the new champion), "Model Rejected" (of the version serving) or
"Deployment Requested" → a model serving on a target.

The deployer trusts no event about approval: it asks the registry, and refuses anything the registry
does not hold as Approved (a forged or stale "Model Approved" deploys nothing). Every deployment is
recorded (version, target, time, the version it replaced) and announced with "Model Deployed".

Targets: ``local`` (an engine process supervised by ``docllm up``, swapped without failing a request
in flight), ``sagemaker`` (a real-time endpoint on the vLLM container, blue/green with auto-rollback)
and ``bedrock`` (Custom Model Import). Which target follows an approval is the setting
``DOCLLM_DEPLOY_TARGET`` (``local`` on the local platform, ``sagemaker`` on AWS, ``none`` to deploy
only when asked).

**Canary rollouts** (local target; SageMaker's blue/green ``DeploymentConfig`` does this for an
endpoint): ``deploy(..., canary_percent=10, bake_s=300)`` starts the new version's engine beside the
stable one and records it as the endpoint's ``canary`` (``{model_version, weight, bake_until,
started_at, url, ...}``, ``weight`` a fraction): the inference client sends it that share of the
requests, and the per-version metrics and alarms (``docllm-<stage>-serving-<kind>@<version>``) watch
it beside the stable version. "Canary Started" announces it. When its bake period is over, the
engines' watchdog calls :func:`conclude_canary`: with none of the canary's serving alarms in ALARM it
is promoted (:func:`promote_canary`: it takes all traffic, the old engine drains, the deployment is
recorded and "Model Deployed" emitted); an alarm that fires while it bakes makes the rollback handler
call :func:`abort_canary` (the canary engine drains, the stable version keeps all traffic, "Canary
Aborted"). A plain deployment while a canary bakes replaces both: the newest approved fix is never
blocked by a rollout in progress.

Every change of the endpoint record is committed with its event through the outbox, inside
``p.engines.changing()`` for the local target (which then retires the engines the record no longer
names); engines are started before the commit and reused by a retry, so a crash in between redoes
nothing twice.
"""

from __future__ import annotations

import contextlib
import logging
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from docllm.bootstrap import Platform
from docllm.events.contracts import (
    CanaryAborted,
    CanaryStarted,
    DeploymentRequested,
    EventDetail,
    ModelApproved,
    ModelDeployed,
    ModelRejected,
    parse_detail,
)
from docllm.events.envelope import BusEvent
from docllm.exceptions import ConfigurationError, NotFoundError, PermanentError
from docllm.ports.state import Put, Write
from docllm.records import utcnow
from docllm.service_layer.jobs import MODELS_PK, digest
from docllm.service_layer.outbox import commit

STAGE = "deploy"
DEPLOYMENTS_PK = "deployments"
ENDPOINTS_PK = "endpoints"
#: Targets where docllm itself splits traffic for a canary (SageMaker's endpoint does it there).
CANARY_TARGETS = ("local",)
#: Share of traffic (percent) and bake period (seconds) of a canary when only one of them is given.
DEFAULT_CANARY_PERCENT = 10.0
DEFAULT_BAKE_S = 300.0

log = logging.getLogger(__name__)


class NotDeployableError(PermanentError):
    """The registry does not hold the version as Approved, or the target cannot take it."""


def handle_deploy_event(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    event = BusEvent.model_validate(raw)
    if event.detail_type == ModelRejected.DETAIL_TYPE:
        # A rejected version must not keep serving: the champion the gate restored takes its place.
        rejected = parse_detail(event, ModelRejected)
        target = p.settings.deploy_target
        endpoint = (p.state.get(ENDPOINTS_PK, target) or {}) if target != "none" else {}
        if (endpoint.get("canary") or {}).get("model_version") == rejected.model_version:
            reasons = "; ".join(rejected.reasons) or "rejected"
            why = f"{rejected.model_version} was rejected: {reasons}"
            return abort_canary(p, target, why, model_version=rejected.model_version)
        served = endpoint.get("model_version")
        if served != rejected.model_version:
            return {"model": rejected.model_version, "outcome": "rejected, not serving: nothing to replace"}
        if not rejected.champion:
            return {"model": rejected.model_version, "outcome": "rejected while serving, and no champion to restore"}
        return deploy(p, rejected.champion, target, rejected.request_id or "")
    if event.detail_type == ModelApproved.DETAIL_TYPE:
        approved = parse_detail(event, ModelApproved)
        target = p.settings.deploy_target
        if target == "none":
            return {"model": approved.model_version, "outcome": "not deployed (DOCLLM_DEPLOY_TARGET=none)"}
        if approved.champion != approved.model_version:
            return {"model": approved.model_version, "outcome": "approved but not the champion: not deployed"}
        if not _family_deploys(approved.family, target):
            return {"model": approved.model_version, "outcome": f"family {approved.family} is not deployed on {target}"}
        endpoint = p.state.get(ENDPOINTS_PK, target) or {}
        if endpoint.get("model_version") == approved.model_version:
            # The champion approved again (a re-evaluation): it already serves (a canary beside it bakes on).
            return {"model": approved.model_version, "outcome": "already serving"}
        if (endpoint.get("canary") or {}).get("model_version") == approved.model_version:
            return {"model": approved.model_version, "outcome": "already baking as a canary"}
        return deploy(p, approved.model_version, target, approved.request_id or "")
    request = parse_detail(event, DeploymentRequested)
    return deploy(
        p,
        request.model_version,
        request.target,
        request.request_id,
        canary_percent=request.canary_percent,
        bake_s=request.bake_s,
    )


def _family_deploys(family_name: str, target: str) -> bool:
    """The family's ``deploy`` list allows an automatic deployment on ``target`` ("default": the platform's
    target). A family no longer in the families file keeps the platform's default behaviour."""
    from docllm.pipelines.runs import deploys_to
    from docllm.training.families import load_families

    family = load_families().get(family_name)
    return family is None or deploys_to(family.deploy, target)


def deploy(
    p: Platform,
    model_version: str,
    target: str,
    request_id: str,
    *,
    canary_percent: float | None = None,
    bake_s: float | None = None,
    rollback: bool = False,
) -> dict[str, Any]:
    """Serve ``model_version`` on ``target``: to all traffic at once, or as a canary (either argument
    given) that takes ``canary_percent`` of the requests for ``bake_s`` seconds before promotion.

    ``rollback``: the rollback stage restoring a good version. On SageMaker the update then carries no
    ``AutoRollbackConfiguration``: the alarms it would name are the ones in ALARM about the bad
    version, and would make SageMaker roll the rollback itself back."""
    model = _deployable(p, model_version)
    if canary_percent is not None or bake_s is not None:
        return _start_canary(
            p,
            model_version,
            model,
            target,
            request_id,
            percent=DEFAULT_CANARY_PERCENT if canary_percent is None else canary_percent,
            bake_s=DEFAULT_BAKE_S if bake_s is None else bake_s,
        )
    supervise(p)
    with _changing(p, target):
        return _deploy(p, model_version, model, target, request_id, rollback=rollback)


def _changing(p: Platform, target: str) -> AbstractContextManager[None]:
    """For the local target, the engines held still while the endpoint record changes (and the engines
    it no longer names retired after); elsewhere the endpoint is the cloud's, nothing to hold."""
    return p.engines.changing() if target == "local" and p.local else contextlib.nullcontext()


def _deployable(p: Platform, model_version: str) -> dict[str, Any]:
    """The training record of a version the registry holds as Approved (else NotDeployableError)."""
    try:
        package = p.registry.get(model_version)
    except NotFoundError:
        raise NotDeployableError(
            f"model {model_version!r} is not in the registry: nothing unevaluated deploys"
        ) from None
    if package.status != "Approved":
        raise NotDeployableError(
            f"model {model_version!r} is {package.status} in the registry: only Approved versions deploy"
        )
    model = p.state.get(MODELS_PK, model_version)
    if model is None:
        raise NotDeployableError(f"model {model_version!r} has no training record")
    from docllm.service_layer.customize import deploy_refusal

    if (refusal := deploy_refusal(model)) is not None:  # a Bedrock custom model: served by Bedrock only
        raise NotDeployableError(refusal)
    return model


def _deploy(
    p: Platform, model_version: str, model: dict[str, Any], target: str, request_id: str, *, rollback: bool = False
) -> dict[str, Any]:
    current = p.state.get(ENDPOINTS_PK, target) or {}
    deployment_id = digest(model_version, target, request_id)
    if current.get("model_version") == model_version and current.get("deployment_id") == deployment_id:
        return {"model": model_version, "target": target, "outcome": "already deployed"}
    started = utcnow()
    endpoint = _deploy_to(p, target, model_version, model, rollback=rollback)
    record = {
        "deployment_id": deployment_id,
        "target": target,
        "model_version": model_version,
        "family": model["family"],
        "previous_version": current.get("model_version"),
        "endpoint": endpoint["endpoint"],
        "status": endpoint.get("status", "InService"),
        "strategy": "all-at-once",
        "started_at": started,
        "finished_at": utcnow(),
        "request_id": request_id or None,
        "details": endpoint,
    }
    # The endpoint record names what serves now; it carries the deployment id, so a redelivered
    # request finds its deployment done. For the local target, this commit is the switch.
    writes: list[Write] = [
        Put(DEPLOYMENTS_PK, _deployment_key(target, started, deployment_id), record),
        Put(ENDPOINTS_PK, target, {**endpoint, **record, "canary": None}),
    ]
    events: list[EventDetail] = [
        ModelDeployed(
            model_version=model_version,
            family=model["family"],
            target=target,
            endpoint=endpoint["endpoint"],
            previous_version=current.get("model_version"),
            deployment_id=deployment_id,
            request_id=request_id or None,
        )
    ]
    canary = current.get("canary")
    if canary:  # a plain deployment replaces a canary in progress too
        reason = f"replaced by the deployment of {model_version} (all traffic)"
        writes.append(_canary_closed(p, canary, status="Replaced", reason=reason))
        events.append(_canary_aborted(canary, target, stable_version=model_version, reason=reason))
    commit(p, writes, events)
    p.metrics.put("ModelsDeployed", 1, dimensions={"target": target})
    return {"model": model_version, "target": target, "outcome": "deployed", "endpoint": endpoint["endpoint"]}


def _deploy_to(
    p: Platform, target: str, model_version: str, model: dict[str, Any], *, rollback: bool = False
) -> dict[str, Any]:
    if target == "local":
        if not p.local:
            raise ConfigurationError("the local target runs with the local platform (docllm up) only")
        engine = p.engines.start(model_version, model["export_uri"])
        return {
            "endpoint": engine["url"],
            "status": "InService",
            "target": "local",
            "model_version": model_version,
            "family": model["family"],
            "deployed_at": utcnow(),
            **engine,
            **adapter_serving(model_version, model, served="merged"),
        }
    if p.local:
        raise NotDeployableError(f"target {target!r} needs the AWS backend; the local platform deploys to 'local'")
    return p.cloud_deployer.deploy(target, model_version=model_version, model=model, guardrails=not rollback)


def adapter_serving(model_version: str, model: dict[str, Any], *, served: str) -> dict[str, Any]:
    """``{"lora": ...}`` for a LoRA model's deployment record (empty for other models): the adapter,
    its base, and vLLM's flags serving them (``--enable-lora --lora-modules``); ``served`` says what
    this target runs: ``merged`` (the local engine: the merged export) or ``adapter`` (SageMaker: vLLM
    with the base and the adapter)."""
    from docllm.deploy.spec import ADAPTER_CHANNEL, ADDITIONAL_MODEL_DATA, LoraAdapter

    lora = LoraAdapter.of_model(model)
    if lora is None:
        return {}
    return {
        "lora": {
            "served": served,
            "adapter_uri": lora.adapter_uri,
            "base_uri": lora.base_uri,
            "base_model_version": model.get("base_model_version"),
            "adapter_name": model_version,
            "vllm_args": lora.vllm_args(model_version, f"{ADDITIONAL_MODEL_DATA}/{ADAPTER_CHANNEL}"),
        }
    }


def _deployment_key(target: str, started: str, deployment_id: str) -> str:
    return f"{target}#{started}#{deployment_id}"


# -- canary rollouts ------------------------------------------------------------------------------


def _start_canary(
    p: Platform,
    model_version: str,
    model: dict[str, Any],
    target: str,
    request_id: str,
    *,
    percent: float,
    bake_s: float,
) -> dict[str, Any]:
    if target not in CANARY_TARGETS or not p.local:
        raise NotDeployableError(
            f"a canary rollout on {target!r} is the endpoint's own blue/green deployment (DeploymentConfig "
            "with auto-rollback on its alarms); --canary splits traffic on the local target only"
        )
    if not 0 < percent < 100:
        raise NotDeployableError(f"a canary takes more than 0% and less than 100% of the traffic, not {percent:g}%")
    if bake_s <= 0:
        raise NotDeployableError(f"a canary bakes for a positive time, not {bake_s:g} s")
    supervise(p)
    with p.engines.changing():
        current = p.state.get(ENDPOINTS_PK, target) or {}
        stable = current.get("model_version")
        if not stable:
            raise NotDeployableError(
                f"nothing serves on {target!r} yet: a canary splits traffic with a serving version; "
                f"deploy {model_version} without --canary first"
            )
        deployment_id = digest(model_version, target, request_id)
        old = current.get("canary") or None
        if old and old.get("deployment_id") == deployment_id:
            return {"model": model_version, "target": target, "outcome": "already baking as a canary"}
        if stable == model_version:
            return {"model": model_version, "target": target, "outcome": "already serving all traffic"}
        ended = _recorded(p, target, deployment_id)
        if ended is not None:  # a redelivery after the canary ended (promoted or aborted): nothing to redo
            return {"model": model_version, "target": target, "outcome": f"canary already {ended['status']}"}
        started_at = datetime.now(UTC)
        started = _iso(started_at)
        bake_until = _iso(started_at + timedelta(seconds=bake_s))
        engine = p.engines.start(model_version, model["export_uri"])
        key = _deployment_key(target, started, deployment_id)
        canary = {
            "model_version": model_version,
            "family": model["family"],
            "weight": percent / 100.0,
            "percent": percent,
            "bake_s": bake_s,
            "bake_until": bake_until,
            "started_at": started,
            "deployment_id": deployment_id,
            "deployment_key": key,
            "request_id": request_id or None,
            **engine,
        }
        record = {
            "deployment_id": deployment_id,
            "target": target,
            "model_version": model_version,
            "family": model["family"],
            "previous_version": stable,
            "endpoint": engine["url"],
            "status": "Baking",
            "strategy": "canary",
            "canary": {"percent": percent, "bake_s": bake_s, "bake_until": bake_until},
            "started_at": started,
            "finished_at": None,
            "request_id": request_id or None,
            "details": engine,
        }
        writes: list[Write] = [
            Put(DEPLOYMENTS_PK, key, record),
            Put(ENDPOINTS_PK, target, {**current, "canary": canary}),
        ]
        events: list[EventDetail] = [
            CanaryStarted(
                model_version=model_version,
                family=model["family"],
                target="local",
                endpoint=engine["url"],
                stable_version=stable,
                canary_percent=percent,
                bake_until=bake_until,
                deployment_id=deployment_id,
                request_id=request_id or None,
            )
        ]
        if old:
            reason = f"replaced by a canary of {model_version}"
            writes.append(_canary_closed(p, old, status="Replaced", reason=reason))
            events.append(_canary_aborted(old, target, stable_version=stable, reason=reason))
        commit(p, writes, events)
    return {
        "model": model_version,
        "target": target,
        "outcome": "canary started",
        "endpoint": engine["url"],
        "stable": stable,
        "canary_percent": percent,
        "bake_until": bake_until,
    }


def promote_canary(p: Platform, target: str, *, model_version: str | None = None) -> dict[str, Any]:
    """The canary takes all traffic now: its deployment is recorded as done and "Model Deployed" emitted;
    the engine of the version it replaces drains and stops. With ``model_version``, only if the canary
    is that version (a decision about one version never lands on the canary that replaced it)."""
    with _changing(p, target):
        current = p.state.get(ENDPOINTS_PK, target) or {}
        canary = current.get("canary")
        if not canary or (model_version is not None and canary.get("model_version") != model_version):
            outcome = f"no canary of {model_version} to promote" if model_version else "no canary to promote"
            return {"target": target, "outcome": outcome, "serving": current.get("model_version")}
        stable = current.get("model_version")
        now = utcnow()
        deployment = p.state.get(DEPLOYMENTS_PK, canary["deployment_key"]) or {}
        done = {**deployment, "status": "InService", "finished_at": now, "promoted_at": now}
        engine = {k: canary[k] for k in ("url", "pid", "export_dir") if k in canary}
        endpoint = {
            **engine,
            "endpoint": canary["url"],
            "status": "InService",
            "target": target,
            "model_version": canary["model_version"],
            "family": canary["family"],
            "deployed_at": now,
            "deployment_id": canary["deployment_id"],
            "previous_version": stable,
            "strategy": "canary",
            "started_at": canary["started_at"],
            "finished_at": now,
            "request_id": canary.get("request_id"),
            "details": engine,
            "canary": None,
        }
        event = ModelDeployed(
            model_version=canary["model_version"],
            family=canary["family"],
            target=target,
            endpoint=canary["url"],
            previous_version=stable,
            deployment_id=canary["deployment_id"],
            request_id=canary.get("request_id"),
        )
        commit(p, [Put(DEPLOYMENTS_PK, canary["deployment_key"], done), Put(ENDPOINTS_PK, target, endpoint)], [event])
    p.metrics.put("ModelsDeployed", 1, dimensions={"target": target})
    log.info("canary %s promoted on %s (replaced %s)", canary["model_version"], target, stable)
    return {"model": canary["model_version"], "target": target, "outcome": "promoted", "replaced": stable}


def abort_canary(p: Platform, target: str, reason: str, *, model_version: str | None = None) -> dict[str, Any]:
    """Drop the canary: the stable version keeps all traffic; the canary's engine drains and stops, its
    deployment is recorded as aborted with ``reason``, and "Canary Aborted" emitted. With
    ``model_version``, only if the canary is that version (an alarm about v2 never aborts a canary of v3).
    Idempotent: without a (matching) canary it changes nothing."""
    with _changing(p, target):
        current = p.state.get(ENDPOINTS_PK, target) or {}
        canary = current.get("canary")
        if not canary or (model_version is not None and canary.get("model_version") != model_version):
            outcome = f"no canary of {model_version} to abort" if model_version else "no canary to abort"
            return {"target": target, "outcome": outcome, "serving": current.get("model_version")}
        stable = str(current.get("model_version") or "")
        writes = [
            _canary_closed(p, canary, status="Aborted", reason=reason),
            Put(ENDPOINTS_PK, target, {**current, "canary": None}),
        ]
        commit(p, writes, [_canary_aborted(canary, target, stable_version=stable, reason=reason)])
    log.warning("canary %s aborted on %s: %s", canary["model_version"], target, reason)
    return {"model": canary["model_version"], "target": target, "outcome": "canary aborted", "serving": stable}


def conclude_canary(p: Platform, target: str, *, now: str | None = None) -> dict[str, Any] | None:
    """The end of a bake period: promote the canary unless one of its serving alarms is in ALARM
    (then it keeps baking, and the rollback handler's abort follows the alarm), or abort it if the
    registry no longer holds it as Approved. None while it bakes or when there is no canary."""
    current = p.state.get(ENDPOINTS_PK, target) or {}
    canary = current.get("canary")
    if not canary or str(canary.get("bake_until") or "") > (now or utcnow()):
        return None
    version = canary["model_version"]
    firing = firing_alarms(p, version)
    if firing:
        return {
            "model": version,
            "target": target,
            "outcome": "bake over, alarms in ALARM: not promoted",
            "alarms": firing,
        }
    status: str
    try:
        status = p.registry.get(version).status
    except NotFoundError:
        status = "gone from the registry"
    if status != "Approved":
        return abort_canary(
            p, target, f"{version} is {status} in the registry at the end of its bake", model_version=version
        )
    return promote_canary(p, target, model_version=version)


def serving_versions(p: Platform, target: str) -> list[str]:
    """The versions taking traffic on ``target``: the stable one, then the canary (if any)."""
    current = p.state.get(ENDPOINTS_PK, target) or {}
    versions = [str(current["model_version"])] if current.get("model_version") else []
    canary = current.get("canary") or {}
    if canary.get("model_version"):
        versions.append(str(canary["model_version"]))
    return versions


def firing_alarms(p: Platform, model_version: str) -> list[str]:
    """The per-version serving alarms (``docllm-<stage>-serving-<kind>@<version>``) of ``model_version``
    in ALARM, as the local alarm evaluator last recorded them. Without an evaluator (or before its
    first evaluation) nothing is known to fire: unknown counts as quiet."""
    prefix = f"docllm-{p.settings.stage}-serving-"
    return sorted(
        name
        for name, value in _alarm_states(p).items()
        if value == "ALARM" and name.startswith(prefix) and name.endswith(f"@{model_version}")
    )


def _alarm_states(p: Platform) -> dict[str, str]:
    """Alarm name → state value, as the local evaluator stored them (``alarms.db``; empty before its
    first evaluation, and on AWS, where the endpoint's own guardrails watch a rollout)."""
    if not p.local:
        return {}
    path = p.data_dir / "alarms.db"
    if not path.exists():
        return {}
    from docllm.monitoring.evaluator import AlarmStore

    try:
        return {status.name: status.state.value for status in AlarmStore(path).all()}
    except Exception:  # a monitoring failure must not promote or block anything by itself: logged, quiet
        log.exception("cannot read the local alarm states")
        return {}


def supervise(p: Platform) -> None:
    """Arm the local target's bake-period rule: the engines' watchdog calls :func:`conclude_canary`
    once a canary's bake is over. Called by every local deployment; ``docllm up`` calls it at start so
    that a canary that was baking when the platform stopped is still concluded."""
    if not p.local:
        return

    def on_bake_end(target: str) -> None:
        conclude_canary(p, target)

    p.engines.on_bake_end = on_bake_end


def _canary_closed(p: Platform, canary: dict[str, Any], *, status: str, reason: str) -> Put:
    """The canary's deployment record, ended (Aborted or Replaced) with its reason."""
    deployment = p.state.get(DEPLOYMENTS_PK, canary["deployment_key"]) or {}
    return Put(
        DEPLOYMENTS_PK,
        canary["deployment_key"],
        {**deployment, "status": status, "reason": reason, "finished_at": utcnow()},
    )


def _canary_aborted(canary: dict[str, Any], target: str, *, stable_version: str, reason: str) -> CanaryAborted:
    return CanaryAborted(
        model_version=canary["model_version"],
        family=canary["family"],
        target=target,
        stable_version=stable_version,
        reason=reason,
        deployment_id=canary["deployment_id"],
        request_id=canary.get("request_id"),
    )


def _recorded(p: Platform, target: str, deployment_id: str) -> dict[str, Any] | None:
    """A recorded deployment with this id on ``target``, if any."""
    for _, item in p.state.query(DEPLOYMENTS_PK, sk_prefix=f"{target}#"):
        if item.get("deployment_id") == deployment_id:
            return item
    return None


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def deployments(p: Platform, model_version: str | None = None) -> list[dict[str, Any]]:
    """Every recorded deployment (of one version), oldest first."""
    found = [item for _, item in p.state.query(DEPLOYMENTS_PK)]
    if model_version:
        found = [d for d in found if d.get("model_version") == model_version]
    return sorted(found, key=lambda d: d.get("started_at", ""))
