"""What the pipelines stage remembers: a family's stale changes and its pipeline runs (pure models).

State layout (``docs/pipelines.md``):

``pk="pipelines", sk=<family>``
    :class:`FamilyPipeline`: the changes that made the family stale since its last run started
    (documents, tokens, first/last change time), the run in progress, the last run's outcome.
``pk="pipeline-runs", sk=<run_id>``
    :class:`PipelineRun`: one run (``run_id`` is the ``request_id`` every event of its chain repeats).
``pk="pipeline-docs#<family>", sk=<doc_key>``
    :class:`TrackedDocument`: the last content of each document the family's filter matched, so a
    re-upload of the same bytes is no change and a "Document Removed" (which names no service) is
    known to concern the family.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

PIPELINES_PK = "pipelines"
RUNS_PK = "pipeline-runs"
#: How many changed documents a family record and a run list one by one; the totals count them all
#: (a DynamoDB item holds 400 KB: a first run over a whole guide would not fit).
STALE_DETAIL_LIMIT = 200

Change = Literal["added", "changed", "removed"]
Trigger = Literal["change", "schedule", "manual"]
RunState = Literal["running", "cancelled", "superseded", "failed", "decided", "deployed"]
#: States a run never leaves.
ENDED: frozenset[str] = frozenset({"cancelled", "superseded", "failed", "decided", "deployed"})
#: Ended by a person or a newer run: the run's jobs are stopped and nothing it made is registered.
CANCELLED: frozenset[str] = frozenset({"cancelled", "superseded"})


def docs_pk(family: str) -> str:
    """The partition of the documents a family tracks."""
    return f"pipeline-docs#{family}"


class TrackedDocument(BaseModel):
    """The last state of one document the family's filter matched."""

    doc_key: str
    sha256: str | None = None
    tokens: int = 0
    revision: str = ""
    removed: bool = False


class StaleChange(BaseModel):
    """One reason a family is stale: a document added, changed or removed."""

    change: Change
    sha256: str | None = None
    tokens: int = Field(default=0, ge=0)
    at: str = Field(description="when the change arrived (ISO 8601)")
    revision: str = ""


class Staleness(BaseModel):
    """The changes accumulated since the family's last run started."""

    documents: dict[str, StaleChange] = Field(
        default_factory=dict, description=f"doc_key -> change; the first {STALE_DETAIL_LIMIT} only"
    )
    count: int = Field(default=0, ge=0, description="changed documents, all of them")
    tokens: int = Field(default=0, ge=0, description="tokens of the changed documents (ingestion's estimate)")
    first_change_at: str | None = None
    last_change_at: str | None = None

    @property
    def stale(self) -> bool:
        return self.count > 0

    def add(self, doc_key: str, change: StaleChange) -> None:
        """Count one change (a document changed twice counts once, with its newest change)."""
        earlier = self.documents.get(doc_key)
        if earlier is not None:
            self.tokens -= earlier.tokens
        else:
            self.count += 1
        if earlier is not None or len(self.documents) < STALE_DETAIL_LIMIT:
            self.documents[doc_key] = change
        self.tokens = max(0, self.tokens + change.tokens)
        self.first_change_at = self.first_change_at or change.at
        self.last_change_at = change.at

    def reasons(self) -> str:
        """One line: how many documents and tokens changed, and a few of them."""
        if not self.stale:
            return "no changes"
        kinds: dict[str, int] = {}
        for c in self.documents.values():
            kinds[c.change] = kinds.get(c.change, 0) + 1
        parts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        listed = "" if len(self.documents) == self.count else f"; {len(self.documents)} listed"
        return f"{self.count} documents changed ({parts}{listed}), ~{self.tokens} tokens"


class RunSummary(BaseModel):
    """The last ended run of a family, as ``pipeline status`` shows it."""

    run_id: str
    state: RunState
    reason: str = ""
    model_version: str | None = None
    started_at: str
    ended_at: str | None = None


class FamilyPipeline(BaseModel):
    """A family's continuous-training state (``pk="pipelines"``, ``sk=family``)."""

    family: str
    staleness: Staleness = Field(default_factory=Staleness)
    current_run: str | None = Field(default=None, description="the run in progress, if any")
    last_run_started_at: str | None = None
    last_run: RunSummary | None = None
    created_at: str = Field(description="when the stage first saw the family: its schedule counts from here")


class PipelineRun(BaseModel):
    """One run of a family's pipeline (``pk="pipeline-runs"``, ``sk=run_id``)."""

    run_id: str = Field(description="the request_id of the chain: TrainingRequested and every event after it")
    family: str
    method: str
    trigger: Trigger
    reason: str
    staleness: Staleness = Field(description="the changes this run trains on (moved from the family)")
    config_sha256: str = Field(description="the family's configuration when the run started")
    config_version: str = Field(description="the families document's version and digest")
    state: RunState = "running"
    stage: str = "dataset"
    started_at: str
    ended_at: str | None = None
    ended_reason: str | None = None
    dataset_version: str | None = None
    model_version: str | None = None
    stopped_jobs: list[str] = Field(default_factory=list)
    superseded_by: str | None = None
    supersedes: str | None = Field(default=None, description="the run this one superseded, if any")

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def summary(self) -> RunSummary:
        return RunSummary(
            run_id=self.run_id,
            state=self.state,
            reason=self.ended_reason or self.reason,
            model_version=self.model_version,
            started_at=self.started_at,
            ended_at=self.ended_at,
        )


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as written by ``records.utcnow``."""
    return datetime.fromisoformat(text)
