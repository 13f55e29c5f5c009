"""Scheduled canary: "Canary Run Requested" → every canary question asked of the live model, scored,
published as ``CanaryAccuracy`` / ``CanaryQuestions`` (and ``DriftServiceShift``), and recorded.

EventBridge Scheduler (``CanarySchedule``, every 5 minutes) invokes ``CanaryFunction`` directly with
``{"source": "docllm.schedule", "detail-type": "Canary Run Requested", "detail": {}}``; ``docllm up``
runs the same schedule, and ``docllm canary run`` the same handler in the CLI's process. The detail
may name a ``target``; by default the platform's deploy target (``DOCLLM_DEPLOY_TARGET``).

Questions (:mod:`docllm.monitoring.canary`: the operator's ``benchmarks/canary.jsonl``, else a
default set built once per dataset version and kept in state under :data:`CANARY_SETS_PK`) go
through :func:`docllm.answers.service.answer_question` with the platform's index reader and
inference engine, as ``POST /v1/ask`` builds them, in this process: no HTTP call to our own API, so
neither its rate limit nor its availability decides what the canary measures. Asked one after
another (the canary must not load the model it watches), within a time budget: questions left when
it runs out are not asked and not counted (``skipped`` in the run).

Metrics (:mod:`docllm.monitoring.names`), each with ``{Target}`` and ``{Target, Family, Version}``:

* ``CanaryAccuracy`` (Percent) and ``CanaryQuestions`` (Count): the target's over every question;
  per version over the questions that version answered. A failed request names no version: under a
  canary split it counts in the target's figures only (it is not known which version failed);
  when one version serves everything it counts against that version.
* ``DriftServiceShift`` (None): the Jensen–Shannon divergence of the live questions' service mix over
  the last :data:`LIVE_WINDOW_S` against the training split's mix (the dataset manifest). The live
  mix is the answer path's ``AskQuestions`` on ``{Target, Service}`` summed per ``Service``
  (:func:`live_service_mix`, through ``p.metrics_reader``: ``metrics.db`` locally, CloudWatch's
  ``ListMetrics`` + ``GetMetricData`` on AWS); questions that retrieved nothing count as ``none``.
  Not published when the window holds no live question, the training mix is unknown or the metrics
  cannot be read; the run's ``drift_note`` says which.

Nothing deployed on the target (no endpoint record, or the engine answers that no model is
deployed): no metric at all, outcome ``nothing deployed``. The canary alarm treats missing data as
missing; a 0 % would roll back a model that does not exist.

Every run is recorded under :data:`CANARY_RUNS_PK` (sort key ``<target>#<started_at>#<run id>``;
the newest :data:`KEEP_RUNS` of a target kept), for ``docllm canary runs``.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from docllm.answers.models import Answer
from docllm.answers.service import answer_question
from docllm.bootstrap import Platform
from docllm.dataset.versions import load_manifest, read_split_file
from docllm.events.envelope import BusEvent
from docllm.exceptions import ContractError, DocllmError, NotFoundError
from docllm.monitoring import names
from docllm.monitoring.canary import (
    CANARY_SET_KEY,
    DEFAULT_MAX_ANSWERABLE,
    DEFAULT_SPLITS,
    NOT_COVERED_QUESTIONS,
    SET_RULES_VERSION,
    CanaryItem,
    CanarySetError,
    ItemResult,
    default_items,
    parse_canary_set,
    pick_documents,
    score,
    split_service_mix,
    tally,
    tally_by_version,
)
from docllm.monitoring.drift import service_mix_divergence
from docllm.ports.state import Delete, Put, Write
from docllm.records import utcnow
from docllm.service_layer.deploy import ENDPOINTS_PK
from docllm.service_layer.jobs import MODELS_PK
from docllm.service_layer.outbox import commit
from docllm.serving.exceptions import EngineBusyError, NoModelDeployedError

STAGE = "canary"
CANARY_RUN_REQUESTED = "Canary Run Requested"
SCHEDULE_SOURCE = "docllm.schedule"
CANARY_RUNS_PK = "canary-runs"
CANARY_SETS_PK = "canary-sets"
KEEP_RUNS = 288
"""Runs kept per target: a day of runs every 5 minutes."""
DEFAULT_BUDGET_S = 240.0
"""Seconds a run may spend asking; under the schedule's 5 minutes, so two runs never overlap."""
LIVE_WINDOW_S = 3600
"""The live service mix covers the questions of this many seconds (an hour: a few minutes of traffic
is too few questions for a mix; the shift is still published every run)."""
BUSY_RETRY_S = 0.5
"""A busy engine (its queue full) is asked once more after this pause before the item counts as failed."""
MAX_RECORDED_QUESTION_CHARS = 300
NOTHING_DEPLOYED = "nothing deployed"

log = logging.getLogger(__name__)


class CanaryRunRequested(BaseModel):
    """The detail of "Canary Run Requested" (the schedule sends ``{}``)."""

    model_config = ConfigDict(extra="forbid")

    target: str | None = Field(default=None, max_length=64, description="default: DOCLLM_DEPLOY_TARGET")


class QuestionSet(BaseModel):
    """The questions of a run and where they came from."""

    source: Literal["operator", "default"]
    items: list[CanaryItem]
    dataset_version: str | None = None
    split: str | None = Field(default=None, description="default set: the split its documents came from")
    error: str | None = Field(default=None, description="why the operator's set was not used (invalid)")


def handle_canary_event(p: Platform, raw: dict[str, Any], *, budget_s: float = DEFAULT_BUDGET_S) -> dict[str, Any]:
    """Run the canary for "Canary Run Requested" (module docstring); returns the run as recorded."""
    event = BusEvent.model_validate(raw)
    if event.detail_type != CANARY_RUN_REQUESTED:
        raise ContractError(f"the canary handles {CANARY_RUN_REQUESTED!r}, not {event.detail_type!r}")
    request = CanaryRunRequested.model_validate(event.detail)
    return run_canary(p, request.target or default_target(p), budget_s=budget_s, run_id=event.id, trigger=event.source)


def default_target(p: Platform) -> str:
    """The target the canary watches unless asked for another: ``local`` on the local platform (where
    the runtime forces the deploy target to it), else ``DOCLLM_DEPLOY_TARGET`` — as the answer path's
    metrics name it (:class:`docllm.monitoring.ask_metrics.AskMetrics`)."""
    return "local" if p.local else p.settings.deploy_target


def run_canary(
    p: Platform, target: str, *, budget_s: float = DEFAULT_BUDGET_S, run_id: str | None = None, trigger: str = ""
) -> dict[str, Any]:
    """Ask, score, publish and record one canary run against ``target``; returns the run as recorded."""
    run: dict[str, Any] = {
        "run_id": run_id or str(uuid.uuid4()),
        "target": target,
        "trigger": trigger,
        "started_at": utcnow(),
    }
    endpoint = None if target == "none" else p.state.get(ENDPOINTS_PK, target)
    stable = (endpoint or {}).get("model_version")
    if endpoint is None or not stable:
        return _record(p, {**run, "outcome": NOTHING_DEPLOYED})
    canary_version = (endpoint.get("canary") or {}).get("model_version")
    families = {stable: str(endpoint.get("family") or _family(p, stable))}
    if canary_version and canary_version != stable:
        families[canary_version] = _family(p, canary_version)
    run.update(model_version=stable, canary_version=canary_version, family=families[stable])

    facts = _dataset_facts(p, stable)
    questions = question_set(p, facts)
    run["set"] = questions.model_dump(mode="json", exclude={"items"}) | {"questions": len(questions.items)}

    results, failures, skipped = _ask_all(p, questions.items, budget_s)
    if results and len(failures) == len(results) and all(isinstance(e, NoModelDeployedError) for e in failures):
        # The engine says no model serves (undeployed since the record was read): as no endpoint record.
        return _record(p, {**run, "outcome": NOTHING_DEPLOYED, "skipped": skipped})

    total = tally(results)
    per_version = tally_by_version(results, sole_version=None if len(families) > 1 else stable)
    target_dims, _ = names.dimension_sets(target, families[stable], stable)
    if total.accuracy is not None:
        _put_canary(p, total.accuracy, total.questions, target_dims)
        for version, t in per_version.items():
            if t.accuracy is not None:
                versioned = names.dimension_sets(target, _family_in(p, families, version), version)[1]
                _put_canary(p, t.accuracy, t.questions, versioned)
    shift, drift_note = _service_shift(p, target, facts.get("reference_mix"))
    if shift is not None:
        for dims in names.dimension_sets(target, families[stable], stable):
            unit = names.UNITS[names.DRIFT_SERVICE_SHIFT]
            p.metrics.put(names.DRIFT_SERVICE_SHIFT, shift, unit=unit, dimensions=dims)
    p.metrics.flush()
    run.update(
        outcome="measured" if total.questions else "no question asked",
        questions=total.questions,
        correct=total.correct,
        errors=total.errors,
        skipped=skipped,
        accuracy=total.accuracy,
        by_version={
            v: {"questions": t.questions, "correct": t.correct, "errors": t.errors, "accuracy": t.accuracy}
            for v, t in per_version.items()
        },
        drift_service_shift=shift,
        drift_note=drift_note,
        results=[_recorded(r) for r in results],
    )
    return _record(p, run)


# ------------------------------------------------------------------------------------------- questions


def question_set(p: Platform, facts: dict[str, Any]) -> QuestionSet:
    """The operator's set when ``benchmarks/canary.jsonl`` exists and parses, else the default set of the
    deployed model's dataset version (``facts``: :func:`_dataset_facts`). An invalid operator set is
    logged as an error and named in the run; the default set keeps the canary measuring meanwhile."""
    error = None
    try:
        data = p.objects.get(p.settings.raw_bucket, CANARY_SET_KEY)
    except NotFoundError:
        data = None
    if data is not None:
        try:
            return QuestionSet(source="operator", items=parse_canary_set(data))
        except CanarySetError as e:
            error = str(e)
            log.error("canary: the operator's question set is invalid; using the default set: %s", error)
    items = [CanaryItem.model_validate(i) for i in facts.get("items", [])]
    if not items:
        items = [CanaryItem(question=q, expect="abstain", rule="not_covered") for q in NOT_COVERED_QUESTIONS]
    return QuestionSet(
        source="default",
        items=items,
        dataset_version=facts.get("dataset_version"),
        split=facts.get("split"),
        error=error,
    )


def _dataset_facts(p: Platform, model_version: str) -> dict[str, Any]:
    """The default questions and the training split's service mix of the model's dataset version:
    built once (they read the manifest and a split file) and kept in state, by dataset version."""
    model = p.state.get(MODELS_PK, model_version) or {}
    dataset_version = model.get("dataset_version")
    if not dataset_version:
        return {}
    key = f"{dataset_version}#r{SET_RULES_VERSION}"
    cached = p.state.get(CANARY_SETS_PK, key)
    if cached is not None:
        return cached
    facts = build_dataset_facts(p, str(dataset_version))
    if facts.get("complete"):
        p.state.put(CANARY_SETS_PK, key, facts)  # a cache of what is derived from immutable inputs: no event
    return facts


def build_dataset_facts(p: Platform, dataset_version: str) -> dict[str, Any]:
    """Build :func:`_dataset_facts` (``complete`` False when an input could not be read: not cached)."""
    facts: dict[str, Any] = {"dataset_version": dataset_version, "built_at": utcnow(), "complete": False}
    bucket = p.settings.artifact_bucket
    try:
        manifest = load_manifest(p.objects, bucket, dataset_version)
    except DocllmError as e:
        log.warning("canary: no manifest for dataset %s: %s", dataset_version, e)
        return facts
    facts["reference_mix"] = split_service_mix(manifest.documents, "train")
    split = next((s for s in DEFAULT_SPLITS if manifest.split_documents(s)), None)
    if split is None:
        return {**facts, "items": [], "complete": True}
    indexed = set(p.search_reader.document_versions())
    keys = set(
        pick_documents(
            [d.doc_key for d in manifest.split_documents(split)],
            indexed=indexed,
            limit=DEFAULT_MAX_ANSWERABLE * 3,
        )
    )
    if not keys:
        # Held-out pages exist but the index holds none of them (yet: a reindex under way, an index
        # being rebuilt): not cached, so a later run builds the set again.
        log.warning("canary: the index holds none of the %s split's documents of dataset %s", split, dataset_version)
        return facts
    with tempfile.TemporaryDirectory(prefix="docllm-canary-") as tmp:
        path = Path(tmp) / f"{split}.jsonl"
        try:
            p.objects.download_file(bucket, f"datasets/{dataset_version}/{split}.jsonl", path)
        except DocllmError as e:
            log.warning("canary: the %s split of dataset %s is not readable: %s", split, dataset_version, e)
            return facts
        items = default_items((r for r in read_split_file(path) if r.doc_key in keys), indexed=indexed)
    return {**facts, "split": split, "items": [i.model_dump(mode="json") for i in items], "complete": True}


# ------------------------------------------------------------------------------------------- asking


def _ask_all(
    p: Platform, items: list[CanaryItem], budget_s: float
) -> tuple[list[ItemResult], list[BaseException], int]:
    """Each item's result, the failures among them, and how many items the time budget left unasked."""
    start = time.monotonic()
    results: list[ItemResult] = []
    failures: list[BaseException] = []
    for n, item in enumerate(items):
        if time.monotonic() - start >= budget_s:
            log.warning("canary: time budget of %.0fs spent; %d question(s) not asked", budget_s, len(items) - n)
            return results, failures, len(items) - n
        try:
            answer = _answer(p, item)
        except Exception as e:  # any failure of the answer path is what the canary exists to see: wrong
            failures.append(e)
            results.append(score(item, abstained=None, cited=[], model_version=None, error=_reason(e)))
            continue
        results.append(
            score(
                item,
                abstained=answer.abstained,
                cited=[c.doc_key for c in answer.citations],
                model_version=answer.model_version,
                reason=answer.reason,
                latency_ms=answer.latency_ms,
            )
        )
    return results, failures, 0


def _answer(p: Platform, item: CanaryItem) -> Answer:
    """:func:`answer_question` as ``POST /v1/ask`` calls it; a busy engine (its queue full: a 429 to a
    client, who retries) is asked once more after :data:`BUSY_RETRY_S`."""
    try:
        return answer_question(item.question, search=p.search_reader, engine=p.inference, service=item.service)
    except EngineBusyError:
        time.sleep(BUSY_RETRY_S)
        return answer_question(item.question, search=p.search_reader, engine=p.inference, service=item.service)


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


# ------------------------------------------------------------------------------------------- metrics


def _put_canary(p: Platform, accuracy: float, questions: int, dims: dict[str, str]) -> None:
    p.metrics.put(names.CANARY_ACCURACY, accuracy, unit=names.UNITS[names.CANARY_ACCURACY], dimensions=dims)
    p.metrics.put(names.CANARY_QUESTIONS, questions, unit=names.UNITS[names.CANARY_QUESTIONS], dimensions=dims)


def _family(p: Platform, version: str) -> str:
    return str((p.state.get(MODELS_PK, version) or {}).get("family") or names.UNKNOWN)


def _family_in(p: Platform, families: dict[str, str], version: str) -> str:
    if version not in families:  # answered by a version the endpoint record did not name (a swap meanwhile)
        families[version] = _family(p, version)
    return families[version]


def live_service_mix(p: Platform, target: str, *, since_s: float, until_s: float | None = None) -> dict[str, int]:
    """Questions per service answered on ``target`` in ``[since_s, until_s)`` (epoch seconds; until now
    by default): the answer path's ``AskQuestions`` on ``{Target, Service}``, summed per ``Service``.
    Services without a question are absent."""
    end = time.time() if until_s is None else until_s
    sums = p.metrics_reader.sums(
        names.ASK_QUESTIONS,
        names.SERVICE,
        fixed={names.TARGET: target},
        start=datetime.fromtimestamp(since_s, UTC),
        end=datetime.fromtimestamp(end, UTC),
    )
    return {service: n for service, total in sorted(sums.items()) if (n := round(total)) > 0}


def _service_shift(p: Platform, target: str, reference: dict[str, int] | None) -> tuple[float | None, str | None]:
    if not reference:
        return None, "no training split service mix (the dataset manifest is not readable)"
    try:
        live = live_service_mix(p, target, since_s=time.time() - LIVE_WINDOW_S)
    except Exception as e:  # the drift signal must not cost the run its accuracy figures
        log.warning("canary: cannot read the live service mix: %s: %s", type(e).__name__, e)
        return None, f"the live service mix could not be read: {type(e).__name__}: {e}"[:500]
    if not live:
        return None, f"no live question in the last {LIVE_WINDOW_S} s: DriftServiceShift not published"
    return round(service_mix_divergence(live, reference), 6), None


# ------------------------------------------------------------------------------------------- records


def _recorded(r: ItemResult) -> dict[str, Any]:
    item = r.model_dump(mode="json")
    item["question"] = r.question[:MAX_RECORDED_QUESTION_CHARS]
    return item


def _record(p: Platform, run: dict[str, Any]) -> dict[str, Any]:
    """Keep the run (and forget the target's runs past :data:`KEEP_RUNS`); returns it."""
    run["finished_at"] = utcnow()
    target = run["target"]
    sk = f"{target}#{run['started_at']}#{run['run_id']}"
    old = [k for k, _ in p.state.query(CANARY_RUNS_PK, f"{target}#")]
    excess = old[: max(0, len(old) + 1 - KEEP_RUNS)][:90]  # a transaction holds 100 writes; the rest next run
    writes: list[Write] = [Put(CANARY_RUNS_PK, sk, run), *(Delete(CANARY_RUNS_PK, k) for k in excess)]
    # A run is an observation: no other stage acts on it (the metrics are its announcement), so no event.
    commit(p, writes, [])
    log.info("canary run %s: %s", run["run_id"], {k: run.get(k) for k in ("target", "outcome", "accuracy")})
    return run


def canary_runs(p: Platform, target: str | None = None, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` recorded runs (of ``target``), newest first."""
    rows = [item for _, item in p.state.query(CANARY_RUNS_PK, f"{target}#" if target else "")]
    # Two runs can start in the same millisecond (the clock's resolution here): the later one also
    # finished later, so the finish breaks the tie.
    newest_first = sorted(
        rows, key=lambda r: (str(r.get("started_at", "")), str(r.get("finished_at", ""))), reverse=True
    )
    return newest_first[:limit]
