"""Rollback stage: an alarm on a serving model version → the last known good version serves again,
verified, and an incident records every step.

Inputs (one queue, ``RollbackQueue``):

"CloudWatch Alarm State Change" (``aws.cloudwatch``, default bus)
    For an alarm ``docllm-<stage>-serving-<kind>`` (or the local evaluator's per-version instance
    ``<name>@<version>``). ALARM opens (or joins) the incident of the bad deployment and rolls it back;
    OK and INSUFFICIENT_DATA are only noted on the open incidents of that alarm. Any other alarm is
    ignored (drift alarms notify through their own actions).
"Incident Close Requested" (``docllm.rollback``)
    ``docllm incident close ID --cause ...``: the incident is closed with its cause, "Incident Closed".

Deciding
--------
*The bad version* is the one the alarm names (``@version``), else the one serving on the alarm's
``Target`` dimension at the alarm's state time — the canary, when one was baking then (the change is
the suspect). *Stale*: when that deployment no longer serves, or a canary (a fix baking) started after
the alarm, the alarm is recorded on an incident and nothing is done: a newer fix is never blocked.
*The last known good version* is the newest other version in the target's deployment history that the
registry holds Approved (so never a Rejected or RolledBack one) and that no incident names as bad;
a bad canary needs none: it is dropped and the stable version keeps serving. With no good version the
bad one keeps serving and the incident pages.

Once, and resumable
-------------------
The incident's id is a digest of (target, bad version, its deployment): every alarm about that
deployment, and every redelivery, finds the same incident, and only its first writer opens it (a
conditional write); the others add their alarm to its timeline. The rollback is a sequence of steps,
each recorded on the incident after it took effect (:data:`docllm.monitoring.incidents.STEPS`):

1. ``redeploy`` — :func:`docllm.service_layer.deploy.deploy` of the good version with the incident id
   as request id (a repeat is "already deployed"), or :func:`~docllm.service_layer.deploy.abort_canary`;
2. ``verify`` — the target is seen serving it: the local engine's ``/v1/models`` with all the traffic
   (``p.engines.verify``), or the SageMaker endpoint InService on a configuration whose model is the
   good version (polled; retried on the next delivery while the update is still going);
3. ``registry`` — the bad version ``Rejected`` with the rollback marker (``docllm models``: RolledBack),
   after a gate decision by ``docllm:rollback`` is recorded, so the gate applies it as a rollback
   decision when the registry announces the change (aliases, manifest, "Model Rejected": the deployer
   then finds the restored version serving already);
4. ``notify`` — SNS / the local notifications log (at least once);
5. ``announce`` — "Model Rolled Back", committed with the step's record (exactly once).

A crash between two steps loses nothing: the redelivered alarm finds the incident and runs the first
step not recorded; each step is idempotent, so one that took effect just before the crash is redone
harmlessly.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from docllm.bootstrap import Platform
from docllm.events.aws import AlarmStateChangeEvent
from docllm.events.contracts import (
    IncidentClosed,
    IncidentCloseRequested,
    IncidentOpened,
    ModelRolledBack,
    parse_detail,
)
from docllm.exceptions import ConflictError, DocllmError, NotFoundError, PermanentError, TransientError
from docllm.monitoring.incidents import (
    INCIDENTS_PK,
    Action,
    AlarmRecord,
    Incident,
    IncidentHead,
    Severity,
    Step,
    TimelineEntry,
    VersionLinks,
    alarm_dimension,
    alarm_key,
    alarm_record,
    assemble,
    assemble_all,
    closed_key,
    incident_id,
    note_key,
    parse_serving_alarm,
    parse_time,
    step_key,
)
from docllm.ports.notifier import Notification
from docllm.ports.state import Put
from docllm.records import utcnow
from docllm.service_layer import deploy as deployer
from docllm.service_layer.outbox import commit

STAGE = "rollback"
#: Who the gate records as the maker of a rollback's decision.
ROLLBACK_REVIEWER: Final = "docllm:rollback"
ALARM_DETAIL_TYPE: Final = "CloudWatch Alarm State Change"
DEPLOY_TARGETS: Final = ("local", "sagemaker", "bedrock")
#: The dimension that names the target in the serving alarms (docllm.monitoring.names.TARGET).
TARGET_DIMENSION: Final = "Target"
VERSION_DIMENSION: Final = "Version"
#: How long one delivery waits for the target to serve the restored version: locally the switch is
#: done when the deployment returns; a SageMaker update takes minutes, and the next delivery (the
#: queue's retry) goes on waiting. Keep the Lambda's timeout above CLOUD_VERIFY_S.
LOCAL_VERIFY_S: Final = 10.0
LOCAL_POLL_S: Final = 0.05
CLOUD_VERIFY_S: Final = 200.0
CLOUD_POLL_S: Final = 15.0
#: Deployments that never took all the traffic: no version is "good" for having had one of these.
_NOT_SERVED: Final = frozenset({"Failed", "Aborted", "Replaced", "Baking"})

log = logging.getLogger(__name__)


def _now() -> str:
    """A timeline entry's time: microseconds, so that steps taken within a millisecond keep their order."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


# Seams for the tests (no real waiting).
_sleep = time.sleep
_monotonic = time.monotonic


class IncidentNotFoundError(PermanentError):
    """A close request names an incident that does not exist (see ``docllm incidents``)."""


class VerificationPendingError(TransientError):
    """The target does not serve the restored version yet (a SageMaker update still shifting traffic):
    the next delivery goes on waiting."""


class VerificationFailedError(PermanentError):
    """The rollback did not take effect: the target settled on something else, or failed. A person must act."""


# -- entry ----------------------------------------------------------------------------------------


def handle_rollback_event(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    if raw.get("detail-type") == IncidentCloseRequested.DETAIL_TYPE:
        return _on_close(p, parse_detail(raw, IncidentCloseRequested))
    event = AlarmStateChangeEvent.model_validate(alarm_event(raw))
    return _on_alarm(p, event)


def alarm_event(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` as an EventBridge "CloudWatch Alarm State Change". The payload CloudWatch sends to a
    Lambda alarm action (``alarmData``, Powertools' samples) is the same alarm in another envelope:
    it is converted, so either shape drives the handler."""
    if "alarmData" not in raw or "detail" in raw:
        return raw
    data = raw["alarmData"]
    stamp = str(raw.get("time") or (data.get("state") or {}).get("timestamp") or utcnow())
    return {
        "version": "0",
        "id": str(raw.get("id") or f"{raw.get('alarmArn', '')}#{stamp}"),
        "detail-type": ALARM_DETAIL_TYPE,
        "source": raw.get("source", "aws.cloudwatch"),
        "account": str(raw.get("accountId") or "000000000000"),
        "time": parse_time(stamp).isoformat(),
        "region": str(raw.get("region") or "local"),
        "resources": [raw["alarmArn"]] if raw.get("alarmArn") else [],
        "detail": data,
    }


# -- alarms ---------------------------------------------------------------------------------------


@dataclass
class Attribution:
    """Which deployment an alarm is about."""

    bad_version: str
    deployment: dict[str, Any]
    canary: bool = False
    #: An incident the alarm belongs to whatever its own attribution says (an alarm whose datapoints
    #: are mostly from before a rollback is about the version rolled back, not the restored one).
    incident: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def deployment_key(self) -> str:
        return f"{self.deployment.get('deployment_id')}@{self.deployment.get('started_at')}"


def _on_alarm(p: Platform, event: AlarmStateChangeEvent) -> dict[str, Any]:
    d = event.detail
    name = d.alarmName
    serving = parse_serving_alarm(name, p.settings.stage)
    if serving is None:
        return {"alarm": name, "outcome": f"ignored: not a docllm-{p.settings.stage}-serving-* alarm"}
    alarm = alarm_record(d.model_dump(mode="json"), event_id=event.id)
    target = _target(p, d.configuration)
    if target is None:
        return {"alarm": name, "outcome": "ignored: the alarm names no single deploy target (Target dimension)"}
    if d.state.value != "ALARM":
        return _on_other_state(p, target, alarm)
    versions = alarm_dimension(d.configuration, VERSION_DIMENSION)
    named = serving.version or (versions[0] if len(versions) == 1 else None)
    at = parse_time(d.state.timestamp)
    attribution = _attribute(p, target, named, at, alarm)
    if isinstance(attribution, str):
        return {"alarm": name, "target": target, "outcome": f"ignored: {attribution}"}
    iid = attribution.incident or incident_id(target, attribution.bad_version, attribution.deployment_key)
    existing = load_incident(p, iid)
    if existing is not None:
        return _join(p, existing, alarm, attribution)
    head = _plan(p, iid, target, attribution, alarm, at=at)
    return _open(p, head, alarm, attribution)


def _target(p: Platform, configuration: dict[str, Any]) -> str | None:
    targets = alarm_dimension(configuration, TARGET_DIMENSION)
    if not targets and p.settings.deploy_target != "none":
        targets = [p.settings.deploy_target]  # an alarm without the dimension watches the platform's target
    if len(targets) != 1 or targets[0] not in DEPLOY_TARGETS:
        return None
    return targets[0]


def _history(p: Platform, target: str) -> list[dict[str, Any]]:
    return [d for d in deployer.deployments(p) if d.get("target") == target and d.get("started_at")]


def _attribute(p: Platform, target: str, named: str | None, at: datetime, alarm: AlarmRecord) -> Attribution | str:
    """The deployment the alarm is about, or why there is none."""
    history = _history(p, target)
    before = [d for d in history if parse_time(d["started_at"]) <= at]
    if named is not None:
        mine = [d for d in before if d.get("model_version") == named] or [
            d for d in history if d.get("model_version") == named
        ]
        if not mine:
            return f"{named} was never deployed on {target}"
        dep = mine[-1]
        return Attribution(named, dep, canary=dep.get("strategy") == "canary" and not _promoted_by(dep, at))
    stable, canary = _serving_at(before, at)
    if canary is not None:
        return Attribution(str(canary["model_version"]), canary, canary=True)
    if stable is None:
        return f"nothing served on {target} at {alarm.timestamp}"
    attribution = Attribution(str(stable["model_version"]), stable)
    # A rollback that started inside the alarm's window: the datapoints are mostly the rolled-back
    # version's, so the alarm belongs to that incident, not to the version just restored.
    restoring = load_incident(p, str(stable.get("request_id") or "")) if stable.get("request_id") else None
    if (
        restoring is not None
        and restoring.restored_version == stable.get("model_version")
        and parse_time(stable["started_at"]) > _window_start(alarm, at)
    ):
        attribution.incident = restoring.incident_id
        attribution.bad_version = restoring.bad_version
        attribution.notes.append(
            f"its datapoints start before the rollback to {restoring.restored_version} began: "
            f"counted as an alarm about {restoring.bad_version}"
        )
    return attribution


def _promoted_by(dep: dict[str, Any], at: datetime) -> bool:
    promoted = dep.get("promoted_at")
    return bool(promoted) and parse_time(str(promoted)) <= at


def _serving_at(before: list[dict[str, Any]], at: datetime) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(stable, canary) deployments serving at ``at``, from the deployments started by then (oldest first)."""
    stable: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None
    for d in before:
        if d.get("strategy") == "canary":
            if _promoted_by(d, at):
                stable, canary = d, None
                continue
            finished = d.get("finished_at")
            # Aborted or replaced by then, or still baking at that time.
            canary = None if finished and parse_time(str(finished)) <= at else d
        elif d.get("status") != "Failed":
            stable, canary = d, None
    return stable, canary


def _window_start(alarm: AlarmRecord, at: datetime) -> datetime:
    if alarm.window_start:
        try:
            return parse_time(alarm.window_start)
        except ValueError:
            pass
    periods = max(1, len(alarm.datapoints))
    return at - timedelta(seconds=(alarm.period_s or 60) * periods)


def _stale(p: Platform, target: str, attribution: Attribution, at: datetime) -> str | None:
    """Why acting on the alarm now would be acting on the past (None: the bad deployment still serves)."""
    endpoint = p.state.get(deployer.ENDPOINTS_PK, target) or {}
    canary = endpoint.get("canary") or {}
    bad_id = attribution.deployment.get("deployment_id")
    if attribution.canary:
        if canary.get("deployment_id") != bad_id:
            return f"the canary {attribution.bad_version} no longer bakes on {target}"
        return None
    if endpoint.get("deployment_id") != bad_id or endpoint.get("model_version") != attribution.bad_version:
        now = endpoint.get("model_version") or "nothing"
        return (
            f"{attribution.bad_version} no longer serves on {target} ({now} serves since {endpoint.get('started_at')})"
        )
    if canary.get("started_at") and parse_time(str(canary["started_at"])) > at:
        return f"a canary of {canary.get('model_version')} started after the alarm: a fix is baking"
    return None


def _plan(
    p: Platform, iid: str, target: str, attribution: Attribution, alarm: AlarmRecord, *, at: datetime
) -> IncidentHead:
    bad = attribution.bad_version
    family = _family(p, bad) or attribution.deployment.get("family")
    stale = _stale(p, target, attribution, at)
    restored: str | None = None
    action: Action = "none"
    severity: Severity
    if stale is not None:
        severity, summary = "info", f"{alarm.name} in ALARM about {bad} on {target}, stale: {stale}"
    elif attribution.canary:
        endpoint = p.state.get(deployer.ENDPOINTS_PK, target) or {}
        restored, action, severity = endpoint.get("model_version"), "abort_canary", "warning"
        summary = f"{alarm.name} in ALARM: canary {bad} on {target} dropped, {restored} keeps all traffic"
    else:
        restored = last_known_good(p, target, bad)
        if restored is None:
            severity = "page"
            summary = (
                f"{alarm.name} in ALARM: {bad} keeps serving on {target}, there is no good version to roll back to"
            )
        else:
            action, severity = "redeploy", "warning"
            summary = f"{alarm.name} in ALARM: {bad} on {target} rolled back to {restored}"
    versions = [v for v in (bad, restored) if v]
    return IncidentHead(
        incident_id=iid,
        target=target,
        family=family,
        bad_version=bad,
        restored_version=restored,
        action=action,
        stale=stale is not None,
        severity=severity,
        alarm_name=alarm.name,
        opened_at=_now(),
        summary=summary,
        bad_deployment={
            k: attribution.deployment.get(k) for k in ("deployment_id", "started_at", "strategy", "request_id")
        },
        links={v: _links(p, v) for v in versions},
    )


def last_known_good(p: Platform, target: str, bad_version: str) -> str | None:
    """The newest other version in ``target``'s deployment history that served all the traffic, that
    the registry holds Approved (never Rejected, never RolledBack) and that no incident names as bad."""
    suspects = {i.bad_version for i in incidents(p)} | {bad_version}
    seen: set[str] = set()
    for d in reversed(_history(p, target)):
        version = str(d.get("model_version") or "")
        if not version or version in seen or version in suspects or d.get("status") in _NOT_SERVED:
            continue
        seen.add(version)
        try:
            package = p.registry.get(version)
        except NotFoundError:
            continue
        if package.status != "Approved" or package.rolled_back:
            continue
        if p.state.get(deployer.MODELS_PK, version) is None:
            continue  # nothing to deploy it from
        return version
    return None


def _family(p: Platform, version: str) -> str | None:
    model = p.state.get(deployer.MODELS_PK, version) or {}
    return model.get("family")


def _links(p: Platform, version: str) -> VersionLinks:
    """Where the version's export, latest evaluation report and newest manifest are (what is known)."""
    from docllm.service_layer.evaluate import latest_evaluation

    model = p.state.get(deployer.MODELS_PK, version) or {}
    evaluation = latest_evaluation(p, version) or {}
    links = VersionLinks(
        model_version=version,
        export_uri=model.get("export_uri"),
        evaluation_id=evaluation.get("evaluation_id"),
        report_uri=evaluation.get("report_uri"),
        html_uri=evaluation.get("html_uri"),
    )
    try:
        from docllm.service_layer.manifest import find_manifest

        entry = find_manifest(p, version)
        links.manifest_uri, links.manifest_sha256 = entry.uri, entry.sha256
    except DocllmError:
        pass  # no manifest yet (or no model record): the incident shows what there is
    return links


# -- the incident ---------------------------------------------------------------------------------


def load_incident(p: Platform, iid: str) -> Incident | None:
    if not iid or "#" in iid:
        return None
    items = list(p.state.query(INCIDENTS_PK, iid))
    mine = [(sk, item) for sk, item in items if sk == iid or sk.startswith(f"{iid}#")]
    try:
        return assemble(mine)
    except KeyError:
        return None


def incidents(p: Platform) -> list[Incident]:
    """Every incident, newest first."""
    return assemble_all(p.state.query(INCIDENTS_PK))


def _alarm_entry(alarm: AlarmRecord, summary: str, *, kind: str = "alarm", **detail: Any) -> TimelineEntry:
    return TimelineEntry(at=_now(), kind=kind, summary=summary, alarm=alarm, detail=detail)


def _open(p: Platform, head: IncidentHead, alarm: AlarmRecord, attribution: Attribution) -> dict[str, Any]:
    entry = _alarm_entry(alarm, f"{alarm.name} in ALARM: {alarm.reason or ''}".strip(), notes=attribution.notes)
    opened = IncidentOpened(
        incident_id=head.incident_id,
        target=head.target,
        family=head.family,
        bad_version=head.bad_version,
        restored_version=head.restored_version,
        severity=head.severity,
        alarm_name=head.alarm_name,
        summary=head.summary,
    )
    try:
        commit(
            p,
            [
                Put(INCIDENTS_PK, head.incident_id, head.model_dump(mode="json"), if_absent=True),
                Put(INCIDENTS_PK, alarm_key(head.incident_id, alarm), entry.model_dump(mode="json"), if_absent=True),
            ],
            [opened],
        )
    except ConflictError:
        # Another alarm about the same deployment opened it first (two at once): join that one.
        existing = load_incident(p, head.incident_id)
        if existing is None:
            raise
        return _join(p, existing, alarm, attribution)
    log.warning("incident %s opened: %s", head.incident_id, head.summary)
    incident = load_incident(p, head.incident_id)
    assert incident is not None
    return _resume(p, incident, opened=True)


def _join(p: Platform, incident: Incident, alarm: AlarmRecord, attribution: Attribution) -> dict[str, Any]:
    entry = _alarm_entry(
        alarm, f"{alarm.name} in ALARM (joined the incident): {alarm.reason or ''}".strip(), notes=attribution.notes
    )
    if _add(p, alarm_key(incident.incident_id, alarm), entry):
        incident = load_incident(p, incident.incident_id) or incident
    return _resume(p, incident, opened=False)


def _add(p: Platform, key: str, entry: TimelineEntry) -> bool:
    """Add an entry unless it is there (a redelivery); whether it was added now."""
    try:
        p.state.put(INCIDENTS_PK, key, entry.model_dump(mode="json"), if_absent=True)
    except ConflictError:
        return False
    return True


def _note(
    p: Platform, incident: Incident, kind: str, summary: str, *, severity: Severity | None = None, **detail: Any
) -> None:
    entry = TimelineEntry(at=_now(), kind=kind, summary=summary, severity=severity, detail=detail)
    _add(p, note_key(incident.incident_id, time.time_ns()), entry)


def _done(p: Platform, incident: Incident, step: Step, summary: str, **detail: Any) -> None:
    _add(
        p,
        step_key(incident.incident_id, step),
        TimelineEntry(at=_now(), kind=step, summary=summary, step=step, detail=detail),
    )


def _on_other_state(p: Platform, target: str, alarm: AlarmRecord) -> dict[str, Any]:
    """OK or INSUFFICIENT_DATA: noted on the open incidents this alarm is part of, nothing else."""
    kind = "alarm-recovered" if alarm.state == "OK" else "alarm-insufficient-data"
    noted = []
    for incident in incidents(p):
        if incident.status != "open" or incident.target != target:
            continue
        if alarm.name not in {a.name for a in incident.alarms}:
            continue
        summary = f"{alarm.name} back to OK" if alarm.state == "OK" else f"{alarm.name} has insufficient data"
        _add(p, alarm_key(incident.incident_id, alarm), _alarm_entry(alarm, summary, kind=kind))
        noted.append(incident.incident_id)
    return {"alarm": alarm.name, "state": alarm.state, "outcome": "noted" if noted else "ignored", "incidents": noted}


# -- the steps ------------------------------------------------------------------------------------


def _resume(p: Platform, incident: Incident, *, opened: bool) -> dict[str, Any]:
    """Run the incident's steps from the first one not recorded; each is recorded once it took effect."""
    ran: list[str] = []
    while (step := incident.next_step) is not None:
        going_on = _run(p, incident, step)
        reloaded = load_incident(p, incident.incident_id)
        assert reloaded is not None
        incident = reloaded
        if not going_on:
            break
        ran.append(step)
    if incident.stale:
        outcome = "stale: recorded, nothing done"
    elif incident.superseded:
        outcome = "superseded: another deployment came first, the rollback stopped"
    elif incident.action == "none":
        outcome = "no good version: keeps serving, paged"
    elif incident.next_step is None and "announce" in incident.steps_done:
        outcome = "rolled back" if ran else "already rolled back"
    else:
        outcome = f"stopped before {incident.next_step}"
    return {
        "incident": incident.incident_id,
        "opened": opened,
        "outcome": outcome,
        "target": incident.target,
        "bad_version": incident.bad_version,
        "restored_version": incident.restored_version,
        "steps": ran,
    }


def _run(p: Platform, incident: Incident, step: Step) -> bool:
    """Run ``step``; False when the incident ends here (recorded as superseded)."""
    if step == "redeploy":
        return _redeploy(p, incident)
    if step == "verify":
        _verify(p, incident)
    elif step == "registry":
        _mark_registry(p, incident)
    elif step == "notify":
        _notify(p, incident)
    else:
        _announce(p, incident)
    return True


def _redeploy(p: Platform, incident: Incident) -> bool:
    target, bad, restored = incident.target, incident.bad_version, incident.restored_version
    assert restored is not None
    endpoint = p.state.get(deployer.ENDPOINTS_PK, target) or {}
    canary = endpoint.get("canary") or {}
    bad_id = incident.bad_deployment.get("deployment_id")
    if incident.action == "abort_canary":
        if canary.get("deployment_id") == bad_id:
            result = deployer.abort_canary(
                p, target, f"incident {incident.incident_id}: {incident.alarm_name} in ALARM", model_version=bad
            )
        elif endpoint.get("model_version") == bad:
            return _superseded(p, incident, f"the canary {bad} was promoted before it could be dropped")
        else:
            result = {"outcome": "canary already gone", "serving": endpoint.get("model_version")}
        _done(p, incident, "redeploy", f"canary {bad} dropped: {restored} takes all traffic", result=result)
        return True
    ours = endpoint.get("request_id") == incident.incident_id
    if not ours and endpoint.get("deployment_id") != bad_id:
        # Someone deployed something else since the incident opened: never undo a newer deployment.
        return _superseded(p, incident, f"{endpoint.get('model_version')} was deployed on {target} meanwhile")
    result = deployer.deploy(p, restored, target, incident.incident_id, rollback=True)
    _done(p, incident, "redeploy", f"{restored} deployed on {target} in place of {bad}", result=result)
    return True


def _superseded(p: Platform, incident: Incident, why: str) -> bool:
    _add(
        p,
        f"{incident.incident_id}#superseded",
        TimelineEntry(at=_now(), kind="superseded", summary=f"rollback not done: {why}", severity="page"),
    )
    return False


def _verify(p: Platform, incident: Incident) -> None:
    restored = incident.restored_version
    assert restored is not None
    started = _monotonic()
    if incident.target == "local":
        deadline, attempts = started + LOCAL_VERIFY_S, 0
        while True:
            attempts += 1
            if p.engines.verify(restored):
                _done(
                    p,
                    incident,
                    "verify",
                    f"{restored} serves all traffic on local (its engine's /v1/models names it)",
                    observed=restored,
                    attempts=attempts,
                    seconds=round(_monotonic() - started, 3),
                )
                return
            if _monotonic() >= deadline:
                break
            _sleep(LOCAL_POLL_S)
        current = (p.state.get(deployer.ENDPOINTS_PK, "local") or {}).get("model_version")
        _note(
            p, incident, "verification-failed", f"{restored} does not serve all local traffic yet ({current} recorded)"
        )
        raise VerificationPendingError(f"incident {incident.incident_id}: {restored} does not serve on local yet")
    _verify_cloud(p, incident, restored, started)


def _verify_cloud(p: Platform, incident: Incident, restored: str, started: float) -> None:
    target = incident.target
    model = p.state.get(deployer.MODELS_PK, restored) or {"family": incident.family}
    deadline = started + CLOUD_VERIFY_S
    attempts = 0
    while True:
        attempts += 1
        try:
            serving = p.cloud_deployer.serving(target, model=model)
        except PermanentError as e:
            # No live configuration to read back (a Bedrock import): say so loudly, and go on.
            _done(p, incident, "verify", f"cannot verify what serves on {target}: {e}", observed=None, verified=False)
            _note(p, incident, "escalated", f"the rollback on {target} is unverified: check it", severity="page")
            return
        if serving is not None and serving.version == restored:
            _done(
                p,
                incident,
                "verify",
                f"{serving.endpoint} is InService on {serving.config}, whose model is {restored}",
                observed=restored,
                endpoint=serving.endpoint,
                config=serving.config,
                attempts=attempts,
                seconds=round(_monotonic() - started, 3),
            )
            return
        if serving is None or (serving.settled and restored not in serving.versions):
            seen = (
                "no endpoint" if serving is None else f"{serving.status} serving {', '.join(serving.versions) or '?'}"
            )
            if serving is not None and serving.failure_reason:
                seen += f" ({serving.failure_reason})"
            _note(p, incident, "verification-failed", f"{target} did not take {restored}: {seen}", severity="page")
            _page(p, incident, f"the rollback to {restored} did not take effect on {target}: {seen}")
            raise VerificationFailedError(
                f"incident {incident.incident_id}: {target} does not serve {restored}: {seen}"
            )
        if _monotonic() + CLOUD_POLL_S > deadline:
            _note(p, incident, "verification-pending", f"{target} is {serving.status}: still waiting for {restored}")
            raise VerificationPendingError(
                f"incident {incident.incident_id}: {target} is {serving.status}, not yet serving {restored}"
            )
        _sleep(CLOUD_POLL_S)


def _mark_registry(p: Platform, incident: Incident) -> None:
    """Record the gate decision first (the gate applies it when the registry announces the change),
    then set the registry: the bad version Rejected, marked rolled back by the alarm."""
    from docllm.service_layer.gate import DECISIONS_PK, DecisionRecord

    bad = incident.bad_version
    try:
        package = p.registry.get(bad, family=incident.family)
    except NotFoundError:
        _done(p, incident, "registry", f"{bad} is not in the registry: nothing to mark")
        return
    decision_id = f"rollback-{incident.incident_id}"
    why = (
        f"rolled back by incident {incident.incident_id}: {incident.alarm_name} in ALARM on {incident.target}"
        f"{' (canary dropped)' if incident.action == 'abort_canary' else ''}; {incident.restored_version} serves"
    )
    decision = DecisionRecord(
        decision_id=decision_id,
        model_version=bad,
        family=package.family,
        status="Rejected",
        decided_by=ROLLBACK_REVIEWER,
        # Like a person's decision, it stands when the version is evaluated again: a rolled-back version
        # serves again only after a person approves it.
        override=True,
        reasons=[why],
        champion_at_decision=p.registry.aliases(package.family).get("champion"),
        request_id=incident.incident_id,
    )
    with contextlib.suppress(ConflictError):  # recorded by an earlier delivery: the stored one stands
        p.state.put(DECISIONS_PK, decision.sk, decision.model_dump(mode="json"), if_absent=True)
    description = f"[docllm decision {decision_id}] {ROLLBACK_REVIEWER}: {why}"
    p.registry.mark_rolled_back(
        bad, alarm=incident.alarm_name, incident_id=incident.incident_id, description=description
    )
    _done(
        p,
        incident,
        "registry",
        f"{bad} RolledBack in the registry (Rejected: {incident.alarm_name})",
        decision=decision_id,
    )


def _notify(p: Platform, incident: Incident) -> None:
    stage = p.settings.stage
    if incident.action == "none":
        subject = (
            f"[docllm {stage}] PAGE: {incident.bad_version} keeps serving on {incident.target}, nothing to roll back to"
        )
        severity: Severity = "page"
    else:
        subject = (
            f"[docllm {stage}] rolled back {incident.bad_version} on {incident.target} to {incident.restored_version}"
        )
        severity = "page" if incident.severity == "page" else "warning"
    lines = [
        incident.summary,
        f"incident: {incident.incident_id} (docllm incident show {incident.incident_id})",
        f"alarm: {incident.alarm_name}",
        *[f"  {a.name} {a.state} at {a.timestamp}: {a.reason or ''}" for a in incident.alarms],
        f"bad version: {incident.bad_version}",
        f"restored version: {incident.restored_version or 'none'}",
        *[f"step {e.kind}: {e.summary}" for e in incident.timeline if e.step is not None],
    ]
    answer = p.notifier.notify(
        Notification(
            subject=subject,
            message="\n".join(lines),
            severity=severity,
            attributes={
                "incident_id": incident.incident_id,
                "target": incident.target,
                "model_version": incident.bad_version,
                "restored_version": incident.restored_version or "",
            },
        )
    )
    _done(p, incident, "notify", f"notified ({severity})", channel=answer)


def _page(p: Platform, incident: Incident, why: str) -> None:
    try:
        p.notifier.notify(
            Notification(
                subject=f"[docllm {p.settings.stage}] PAGE: {why}",
                message=f"{why}\nincident: {incident.incident_id} (docllm incident show {incident.incident_id})",
                severity="page",
                attributes={"incident_id": incident.incident_id, "target": incident.target},
            )
        )
    except DocllmError:
        log.exception("could not page about incident %s", incident.incident_id)


def _announce(p: Platform, incident: Incident) -> None:
    restored = incident.restored_version
    assert restored is not None
    verified = bool((incident.verification or {}).get("observed") == restored)
    event = ModelRolledBack(
        model_version=incident.bad_version,
        restored_version=restored,
        family=incident.family or "",
        target=incident.target,
        alarm_name=incident.alarm_name,
        incident_id=incident.incident_id,
        action="abort_canary" if incident.action == "abort_canary" else "redeploy",
        verified=verified,
    )
    entry = TimelineEntry(
        at=_now(),
        kind="announce",
        summary="announced: Model Rolled Back",
        step="announce",
        detail={"verified": verified},
    )
    try:
        # The step's record and the event in one transaction: announced exactly once.
        commit(
            p,
            [
                Put(
                    INCIDENTS_PK,
                    step_key(incident.incident_id, "announce"),
                    entry.model_dump(mode="json"),
                    if_absent=True,
                )
            ],
            [event],
        )
    except ConflictError:
        return
    p.metrics.put("ModelsRolledBack", 1, dimensions={"target": incident.target})


# -- closing --------------------------------------------------------------------------------------


def _on_close(p: Platform, request: IncidentCloseRequested) -> dict[str, Any]:
    incident = load_incident(p, request.incident_id)
    if incident is None:
        raise IncidentNotFoundError(f"no incident {request.incident_id!r}: see docllm incidents")
    if incident.status == "closed":
        return {"incident": incident.incident_id, "outcome": "already closed", "closed_by": incident.closed_by}
    entry = TimelineEntry(
        at=_now(),
        kind="closed",
        summary=f"closed by {request.closed_by}: {request.cause}",
        detail={"cause": request.cause, "closed_by": request.closed_by, "request_id": request.request_id},
    )
    closed = IncidentClosed(
        incident_id=incident.incident_id,
        cause=request.cause,
        closed_by=request.closed_by,
        request_id=request.request_id,
    )
    try:
        commit(
            p,
            [Put(INCIDENTS_PK, closed_key(incident.incident_id), entry.model_dump(mode="json"), if_absent=True)],
            [closed],
        )
    except ConflictError:
        return {"incident": incident.incident_id, "outcome": "already closed"}
    return {"incident": incident.incident_id, "outcome": "closed", "cause": request.cause}


__all__ = [
    "ROLLBACK_REVIEWER",
    "IncidentNotFoundError",
    "VerificationFailedError",
    "VerificationPendingError",
    "handle_rollback_event",
    "incidents",
    "last_known_good",
    "load_incident",
]
