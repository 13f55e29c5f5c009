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
"""

from __future__ import annotations

from typing import Any

from docllm.bootstrap import Platform
from docllm.events.contracts import DeploymentRequested, ModelApproved, ModelDeployed, ModelRejected, parse_detail
from docllm.events.envelope import BusEvent
from docllm.exceptions import ConfigurationError, NotFoundError, PermanentError
from docllm.ports.state import Put
from docllm.records import utcnow
from docllm.service_layer.jobs import MODELS_PK, digest
from docllm.service_layer.outbox import commit

STAGE = "deploy"
DEPLOYMENTS_PK = "deployments"
ENDPOINTS_PK = "endpoints"


class NotDeployableError(PermanentError):
    """The registry does not hold the version as Approved, or the target cannot take it."""


def handle_deploy_event(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    event = BusEvent.model_validate(raw)
    if event.detail_type == ModelRejected.DETAIL_TYPE:
        # A rejected version must not keep serving: the champion the gate restored takes its place.
        rejected = parse_detail(event, ModelRejected)
        target = p.settings.deploy_target
        served = (p.state.get(ENDPOINTS_PK, target) or {}).get("model_version") if target != "none" else None
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
        if (p.state.get(ENDPOINTS_PK, target) or {}).get("model_version") == approved.model_version:
            # The champion approved again (a re-evaluation): it already serves.
            return {"model": approved.model_version, "outcome": "already serving"}
        return deploy(p, approved.model_version, target, approved.request_id or "")
    request = parse_detail(event, DeploymentRequested)
    return deploy(p, request.model_version, request.target, request.request_id)


def deploy(p: Platform, model_version: str, target: str, request_id: str) -> dict[str, Any]:
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
    current = p.state.get(ENDPOINTS_PK, target) or {}
    deployment_id = digest(model_version, target, request_id)
    if current.get("model_version") == model_version and current.get("deployment_id") == deployment_id:
        return {"model": model_version, "target": target, "outcome": "already deployed"}
    started = utcnow()
    endpoint = _deploy_to(p, target, model_version, model)
    record = {
        "deployment_id": deployment_id,
        "target": target,
        "model_version": model_version,
        "family": model["family"],
        "previous_version": current.get("model_version"),
        "endpoint": endpoint["endpoint"],
        "status": endpoint.get("status", "InService"),
        "started_at": started,
        "finished_at": utcnow(),
        "request_id": request_id or None,
        "details": endpoint,
    }
    # The endpoint record names what serves now; it carries the deployment id, so a redelivered
    # request finds its deployment done.
    writes = [
        Put(DEPLOYMENTS_PK, f"{target}#{started}#{deployment_id}", record),
        Put(ENDPOINTS_PK, target, {**endpoint, **record}),
    ]
    event = ModelDeployed(
        model_version=model_version,
        family=model["family"],
        target=target,
        endpoint=endpoint["endpoint"],
        previous_version=current.get("model_version"),
        deployment_id=deployment_id,
        request_id=request_id or None,
    )
    commit(p, writes, [event])
    p.metrics.put("ModelsDeployed", 1, dimensions={"target": target})
    return {"model": model_version, "target": target, "outcome": "deployed", "endpoint": endpoint["endpoint"]}


def _deploy_to(p: Platform, target: str, model_version: str, model: dict[str, Any]) -> dict[str, Any]:
    if target == "local":
        if not p.local:
            raise ConfigurationError("the local target runs with the local platform (docllm up) only")
        record = p.engines.deploy(model_version, model["export_uri"], family=model["family"])
        # The local record carries the deployment id too, so a redelivered request is seen as done.
        return {"endpoint": record["url"], "status": "InService", **record}
    if p.local:
        raise NotDeployableError(f"target {target!r} needs the AWS backend; the local platform deploys to 'local'")
    return p.cloud_deployer.deploy(target, model_version=model_version, model=model)


def deployments(p: Platform, model_version: str | None = None) -> list[dict[str, Any]]:
    """Every recorded deployment (of one version), oldest first."""
    found = [item for _, item in p.state.query(DEPLOYMENTS_PK)]
    if model_version:
        found = [d for d in found if d.get("model_version") == model_version]
    return sorted(found, key=lambda d: d.get("started_at", ""))
