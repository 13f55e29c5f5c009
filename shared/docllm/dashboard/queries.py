"""What the dashboard reads, a page at a time.

Every listing takes ``after`` (the last sort key of the previous page) and ``limit`` and asks the state
store for that page only (:meth:`~docllm.ports.state.StateStore.query_page`); counts are aggregates the
store computes (:meth:`~docllm.ports.state.StateStore.count_by`). Nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from docllm.bootstrap import Platform
from docllm.exceptions import NotFoundError
from docllm.records import DOCS_PK, DocumentRecord
from docllm.registry.models import ModelPackage

PAGE = 25
#: Chunks shown per page of a document.
CHUNK_PAGE = 20


@dataclass(frozen=True)
class Page:
    rows: list[tuple[str, dict[str, Any]]]
    next_after: str | None
    """The key the next page starts after (None: this is the last page)."""


def _page(p: Platform, pk: str, prefix: str = "", *, after: str | None, limit: int, **kw: Any) -> Page:
    # One row more than shown tells whether there is a next page without counting the rest.
    rows = p.state.query_page(pk, prefix, after=after, limit=limit + 1, **kw)
    # A filtered page on DynamoDB may stop at its read cap with fewer rows; it then says where it
    # stopped (``resume_after``) and the next page goes on from there.
    resume = getattr(rows, "resume_after", None)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1][0] if more and rows else resume)


# -- documents ------------------------------------------------------------------------------------


def document_counts(p: Platform) -> dict[tuple[str, str], int]:
    """(status, service) -> documents."""
    return {(k[0], k[1]): n for k, n in p.state.count_by(DOCS_PK, ("status", "service")).items()}


def documents(
    p: Platform, *, prefix: str = "", status: str | None = None, after: str | None = None, limit: int = PAGE
) -> Page:
    """Documents whose key starts with ``prefix`` (a service is a key's first segment), in key order."""
    where = {"status": status} if status else None
    return _page(p, DOCS_PK, prefix, after=after, limit=limit, where=where)


def document(p: Platform, doc_key: str) -> DocumentRecord | None:
    item = p.state.get(DOCS_PK, doc_key)
    return None if item is None else DocumentRecord.model_validate(item)


def chunks(p: Platform, doc_key: str, *, start: int = 0, limit: int = CHUNK_PAGE) -> tuple[list[dict[str, Any]], bool]:
    """Chunks ``start``… of a document's stored chunk file, and whether more follow."""
    from docllm.service_layer.ingest import chunks_key

    try:
        body = p.objects.get(p.settings.processed_bucket, chunks_key(doc_key)).decode("utf-8")
    except NotFoundError:
        return [], False
    lines = [line for line in body.splitlines() if line.strip()]
    return [json.loads(line) for line in lines[start : start + limit]], len(lines) > start + limit


def dedup_log(p: Platform, doc_key: str, *, limit: int = 20) -> list[dict[str, Any]]:
    from docllm.ingest.dedup import LOG_PK

    return [item for _, item in p.state.query_page(LOG_PK, doc_key, limit=limit) if item.get("doc_key") == doc_key]


def recent_dedup(p: Platform, *, after: str | None = None, limit: int = 10) -> Page:
    from docllm.ingest.dedup import LOG_PK

    return _page(p, LOG_PK, after=after, limit=limit)


# -- platform -------------------------------------------------------------------------------------


def queues(p: Platform) -> list[dict[str, Any]]:
    """Depth and dead letters of every queue the local runtime runs (nothing on AWS: see CloudWatch)."""
    if not p.local:
        return []
    q = p.local_queue
    found = []
    for name in sorted(q.queues):
        s = q.stats(name)
        found.append(
            {"queue": name, "visible": s.visible, "in_flight": s.in_flight, "delayed": s.delayed, "dead": s.dead}
        )
    return found


def dead_letters(p: Platform, queue: str, *, limit: int = 5) -> list[dict[str, Any]]:
    if not p.local:
        return []
    return [
        {"message_id": d.message_id, "reason": d.reason, "receive_count": d.receive_count}
        for d in p.local_queue.dead_letters(queue, limit=limit)
    ]


def pipelines(p: Platform) -> list[dict[str, Any]]:
    """Each family's continuous-training state (one item per family)."""
    from docllm.pipelines.records import PIPELINES_PK

    return [item for _, item in p.state.query_page(PIPELINES_PK, limit=100)]


def alarms(p: Platform) -> list[dict[str, str]]:
    """The local alarm evaluator's last states (empty before its first evaluation and on AWS)."""
    if not p.local:
        return []
    path = p.data_dir / "alarms.db"
    if not path.exists():
        return []
    from docllm.monitoring.evaluator import AlarmStore

    return [{"name": s.name, "state": s.state.value} for s in AlarmStore(path).all()]


# -- models ---------------------------------------------------------------------------------------


def models(p: Platform, *, family: str | None = None, after: str | None = None, limit: int = PAGE) -> Page:
    """Trained model records, newest version name first (version names sort by time)."""
    from docllm.service_layer.jobs import MODELS_PK

    where = {"family": family} if family else None
    return _page(p, MODELS_PK, after=after, limit=limit, where=where, descending=True)


def model(p: Platform, version: str) -> dict[str, Any] | None:
    from docllm.service_layer.jobs import MODELS_PK

    return p.state.get(MODELS_PK, version)


def package(p: Platform, version: str, family: str | None = None) -> ModelPackage | None:
    try:
        return p.registry.get(version, family=family)
    except NotFoundError:
        return None


def champion(p: Platform, family: str) -> ModelPackage | None:
    try:
        return p.registry.champion(family)
    except NotFoundError:
        return None


def evaluation(p: Platform, evaluation_id: str | None) -> dict[str, Any] | None:
    from docllm.service_layer.evaluate import EVALUATIONS_PK

    return p.state.get(EVALUATIONS_PK, evaluation_id) if evaluation_id else None


def decisions(p: Platform, version: str) -> list[dict[str, Any]]:
    from docllm.service_layer.gate import DECISIONS_PK

    return [item for _, item in p.state.query_page(DECISIONS_PK, f"{version}#", limit=20)]


def families(p: Platform) -> list[str]:
    from docllm.training.families import load_families

    return sorted(load_families())


# -- deployments and incidents ----------------------------------------------------------------------


def endpoints(p: Platform) -> list[dict[str, Any]]:
    """What each target serves now (one record per target)."""
    from docllm.service_layer.deploy import ENDPOINTS_PK

    return [{"target": sk, **item} for sk, item in p.state.query_page(ENDPOINTS_PK, limit=20)]


def deployment_history(p: Platform, *, after: str | None = None, limit: int = PAGE) -> Page:
    from docllm.service_layer.deploy import DEPLOYMENTS_PK

    return _page(p, DEPLOYMENTS_PK, after=after, limit=limit, descending=True)


ACTIONS_PK = "dashboard-actions"
"""What people did from the dashboard: ``sk = <at>#<request id>``, who, what, why."""


def actions(p: Platform, *, after: str | None = None, limit: int = 10) -> Page:
    return _page(p, ACTIONS_PK, after=after, limit=limit, descending=True)


def incidents(p: Platform, *, start: int = 0, limit: int = PAGE) -> tuple[list[Any], bool]:
    """Incidents, newest first. There is one per alarm that rolled a deployment back, so few: they are
    assembled from their records whole (the timeline lives in several items each)."""
    from docllm.service_layer.rollback import incidents as all_incidents

    found = all_incidents(p)
    return found[start : start + limit], len(found) > start + limit


def incident(p: Platform, incident_id: str) -> Any:
    from docllm.service_layer.rollback import load_incident

    return load_incident(p, incident_id)


# -- benchmarks -----------------------------------------------------------------------------------

BENCHMARKS_PREFIX = "benchmarks/"


def benchmarks(p: Platform, *, limit: int = 200) -> list[dict[str, Any]]:
    """Uploaded custom benchmark files (a bucket prefix listing, capped)."""
    found = []
    for info in p.objects.list(p.settings.raw_bucket, BENCHMARKS_PREFIX):
        found.append({"key": info.key, "size": info.size, "uploaded": info.last_modified.isoformat(timespec="seconds")})
        if len(found) >= limit:
            break
    return found
