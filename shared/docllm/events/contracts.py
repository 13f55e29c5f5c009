"""Every event the platform emits, as a versioned pydantic model.

One class per ``detail-type``. Each class knows its ``source`` and
``detail-type``; :func:`to_bus` wraps a detail in the EventBridge envelope
and :func:`parse_detail` does the reverse with validation. JSON Schemas of
these models are exported to ``events/schemas/`` by ``docllm events schemas``.

Adding an event: subclass :class:`EventDetail`, set ``SOURCE`` and
``DETAIL_TYPE``, add it to :data:`CONTRACTS`, add a sample under ``events/``.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from docllm.events.envelope import BusEvent
from docllm.exceptions import ContractError


def _request_id() -> str:
    return uuid.uuid4().hex


RequestId = Field(
    default_factory=_request_id,
    description="names one deliberate request; redeliveries repeat it, a new request gets a new one",
)
FollowsRequest = Field(default=None, description="request_id of the request this event continues, if any")


class EventDetail(BaseModel):
    """Base of every ``detail``; ``schema_version`` changes on any breaking change."""

    model_config = ConfigDict(extra="forbid")

    SOURCE: ClassVar[str]
    DETAIL_TYPE: ClassVar[str]
    schema_version: Literal[1] = 1


# --- ingestion -------------------------------------------------------------


class DocumentProcessed(EventDetail):
    """A document was extracted, cleaned and chunked; its chunks are in the processed bucket."""

    SOURCE: ClassVar[str] = "docllm.ingest"
    DETAIL_TYPE: ClassVar[str] = "Document Processed"

    doc_key: str = Field(description="object key as uploaded, e.g. s3/UsingBucket.md")
    bucket: str
    version_id: str = Field(description="S3 version id (or ETag where unversioned)")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    service: str
    title: str
    language: str
    content_format: Literal["markdown", "html", "pdf", "text"]
    chunks_uri: str = Field(description="s3:// URI of the JSONL file of chunks")
    chunk_count: int = Field(ge=0)
    token_estimate: int = Field(ge=0)
    duplicate_of: str | None = Field(default=None, description="doc_key this one duplicates, if any")
    revision: str | None = Field(
        default=None,
        description="when the document record took this state: two state changes never share it, so a "
        "consumer's idempotency (keyed on the detail) tells a redelivery from a new change",
    )


class DocumentQuarantined(EventDetail):
    """A document could not be processed; the original is kept and the reason recorded."""

    SOURCE: ClassVar[str] = "docllm.ingest"
    DETAIL_TYPE: ClassVar[str] = "Document Quarantined"

    doc_key: str
    bucket: str
    version_id: str
    sha256: str | None = None
    reason_code: str = Field(description="machine-readable, e.g. empty, not_found_page, pdf_encrypted")
    reason: str = Field(description="one sentence for a person")


class DocumentRemoved(EventDetail):
    """A document was deleted from the raw bucket; its chunks and index entries go too."""

    SOURCE: ClassVar[str] = "docllm.ingest"
    DETAIL_TYPE: ClassVar[str] = "Document Removed"

    doc_key: str
    bucket: str
    version_id: str | None = None
    revision: str | None = Field(default=None, description="when the document record took this state")


class RawObjectRef(BaseModel):
    """The raw object a request is about, shaped as in S3's own events (one idempotency key for both)."""

    model_config = ConfigDict(populate_by_name=True)

    key: str
    version_id: str = Field(alias="version-id")


class RawBucketRef(BaseModel):
    name: str


ReprocessReason = Literal["canonical_changed", "boilerplate_changed", "superseded"]


class DocumentReprocessRequested(EventDetail):
    """Process a recorded document version again: the document it duplicated went away or changed,
    a document whose key sorts first now holds the same content, or a paragraph it holds became (or
    stopped being) boilerplate. Routed to the ingest stage."""

    SOURCE: ClassVar[str] = "docllm.ingest"
    DETAIL_TYPE: ClassVar[str] = "Document Reprocess Requested"

    bucket: RawBucketRef
    object: RawObjectRef
    reason: ReprocessReason
    former_canonical: str | None = Field(
        default=None, description="canonical_changed: the canonical that went; superseded: the new canonical"
    )
    reprocess_id: str = Field(description="new for every request, so a second one is not taken for a redelivery")


# --- retrieval -------------------------------------------------------------


class DocumentIndexed(EventDetail):
    SOURCE: ClassVar[str] = "docllm.index"
    DETAIL_TYPE: ClassVar[str] = "Document Indexed"

    doc_key: str
    version_id: str
    chunk_count: int = Field(ge=0)


# --- datasets, tokenizers and shards ---------------------------------------


class DatasetBuildRequested(EventDetail):
    SOURCE: ClassVar[str] = "docllm.dataset"
    DETAIL_TYPE: ClassVar[str] = "Dataset Build Requested"

    family: str | None = Field(default=None, description="model family whose data filter applies")
    services: list[str] = Field(default_factory=list, description="empty: every service")
    train_after: bool = Field(default=False, description="continue to tokenizer and training")
    request_id: str = RequestId


class DatasetBuilt(EventDetail):
    SOURCE: ClassVar[str] = "docllm.dataset"
    DETAIL_TYPE: ClassVar[str] = "Dataset Built"

    dataset_version: str
    manifest_uri: str
    family: str | None = None
    previous_version: str | None = None
    documents: int = Field(ge=0)
    chunks: int = Field(ge=0)
    added: int = Field(ge=0)
    removed: int = Field(ge=0)
    changed: int = Field(ge=0)
    train_after: bool = False
    request_id: str | None = FollowsRequest


class TokenizerTrained(EventDetail):
    SOURCE: ClassVar[str] = "docllm.tokenizer"
    DETAIL_TYPE: ClassVar[str] = "Tokenizer Trained"

    tokenizer_version: str
    dataset_version: str
    artifacts_uri: str
    vocab_size: int = Field(gt=0)
    reused: bool = False
    family: str | None = None
    train_after: bool = False
    request_id: str | None = FollowsRequest


class ShardsBuilt(EventDetail):
    """A dataset version is encoded with a tokenizer into packed token shards."""

    SOURCE: ClassVar[str] = "docllm.shards"
    DETAIL_TYPE: ClassVar[str] = "Shards Built"

    dataset_version: str
    tokenizer_version: str
    shards_uri: str
    tokens: dict[str, int] = Field(description="tokens per split")
    family: str | None = None
    train_after: bool = False
    request_id: str | None = FollowsRequest


# --- training --------------------------------------------------------------


class RetrieverTrainingRequested(EventDetail):
    """A person asks for a retriever (dual encoder) on a dataset version and tokenizer (``docllm retriever
    train``); a family with a ``retriever`` section asks by itself on its "Tokenizer Trained"."""

    SOURCE: ClassVar[str] = "docllm.retriever"
    DETAIL_TYPE: ClassVar[str] = "Retriever Training Requested"

    dataset_version: str
    tokenizer_version: str
    settings: dict[str, Any] = Field(default_factory=dict, description="EncoderSettings overrides")
    questions_uri: str | None = Field(
        default=None, description="prefix holding questions.jsonl, the gate's validation questions; None: rule-made"
    )
    family: str | None = None
    request_id: str = RequestId


class RetrieverTrained(EventDetail):
    """A retriever's job completed and its validation gate decided (approved: the index now uses it)."""

    SOURCE: ClassVar[str] = "docllm.retriever"
    DETAIL_TYPE: ClassVar[str] = "Retriever Trained"

    retriever_version: str
    dataset_version: str
    tokenizer_version: str
    artifacts_uri: str
    encoder_sha256: str
    tokenizer_sha256: str
    approved: bool = Field(description="the gate: hybrid not worse than BM25 alone on the validation questions")
    reason: str
    metrics: dict[str, float] = Field(default_factory=dict, description="validation figures, bm25_* and hybrid_*")
    family: str | None = None
    request_id: str | None = FollowsRequest


class TrainingRequested(EventDetail):
    SOURCE: ClassVar[str] = "docllm.training"
    DETAIL_TYPE: ClassVar[str] = "Training Requested"

    family: str
    dataset_version: str | None = Field(default=None, description="None: the newest tokenized")
    tokenizer_version: str | None = None
    train_config: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig overrides for this run on top of the family's (e.g. a longer budget: max_tokens); "
        "only with dataset_version and tokenizer_version",
    )
    request_id: str = RequestId


class ModelTrained(EventDetail):
    SOURCE: ClassVar[str] = "docllm.training"
    DETAIL_TYPE: ClassVar[str] = "Model Trained"

    model_version: str
    family: str
    job_name: str
    dataset_version: str
    tokenizer_version: str
    export_uri: str = Field(description="s3:// prefix of the Hugging Face export")
    checkpoint_uri: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    request_id: str | None = Field(default=None, description="the training request this model answers")


# --- evaluation, the gate and the registry ---------------------------------


class EvaluationRequested(EventDetail):
    """Evaluate a trained model version again (``docllm eval run``), e.g. with a new benchmark."""

    SOURCE: ClassVar[str] = "docllm.evaluate"
    DETAIL_TYPE: ClassVar[str] = "Evaluation Requested"

    model_version: str
    benchmarks: list[str] = Field(
        default_factory=list, description="keys under the raw bucket's benchmarks/ prefix; empty: every benchmark"
    )
    request_id: str = RequestId


class EvaluationCompleted(EventDetail):
    """The evaluation job of a model version finished; its report is stored beside the model."""

    SOURCE: ClassVar[str] = "docllm.evaluate"
    DETAIL_TYPE: ClassVar[str] = "Evaluation Completed"

    model_version: str
    family: str
    evaluation_id: str = Field(description="the evaluation job's name: one model may be evaluated many times")
    report_uri: str = Field(description="s3:// URI of report.json")
    report_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    html_uri: str = Field(description="s3:// URI of the self-contained report.html")
    metrics: dict[str, float] = Field(default_factory=dict, description="headline metrics the gate reads")
    benchmarks: dict[str, dict[str, float]] = Field(default_factory=dict, description="benchmark -> metric -> value")
    request_id: str | None = FollowsRequest


Decision = Literal["approve", "reject"]


class ModelReviewSubmitted(EventDetail):
    """A person overrides the gate on the local platform: approve or reject a model version, with who
    and why. Its own source, so no stage that may publish the gate's outcomes can forge a review.
    On AWS a review is a status change in the SageMaker Model Registry itself, where AWS records the
    caller's IAM identity (LastModifiedBy); the gate refuses this event there."""

    SOURCE: ClassVar[str] = "docllm.review"
    DETAIL_TYPE: ClassVar[str] = "Model Review Submitted"

    model_version: str
    decision: Decision
    reviewer: str = Field(min_length=1, description="the local user who ran docllm approve|reject")
    reason: str = Field(min_length=1, max_length=2000)
    request_id: str = RequestId


class _ModelDecided(EventDetail):
    model_version: str
    family: str
    decided_by: str = Field(description="'gate' for the automatic decision, else the reviewer")
    override: bool = Field(default=False, description="a person's decision rather than the gate's rules")
    reasons: list[str] = Field(default_factory=list, description="every rule's outcome, in order")
    champion: str | None = Field(default=None, description="the family's champion after this decision")
    previous_champion: str | None = None
    manifest_uri: str | None = Field(default=None, description="the signed compliance manifest of this decision")
    manifest_sha256: str | None = None
    request_id: str | None = FollowsRequest


class ModelApproved(_ModelDecided):
    SOURCE: ClassVar[str] = "docllm.gate"
    DETAIL_TYPE: ClassVar[str] = "Model Approved"


class ModelRejected(_ModelDecided):
    SOURCE: ClassVar[str] = "docllm.gate"
    DETAIL_TYPE: ClassVar[str] = "Model Rejected"


# --- deployment ------------------------------------------------------------

DeployTargetName = Literal["local", "sagemaker", "bedrock"]


class DeploymentRequested(EventDetail):
    """Deploy an approved model version to a target (``docllm deploy VERSION --target T``)."""

    SOURCE: ClassVar[str] = "docllm.deploy"
    DETAIL_TYPE: ClassVar[str] = "Deployment Requested"

    model_version: str
    target: DeployTargetName
    canary_percent: float | None = Field(
        default=None,
        gt=0,
        lt=100,
        description="a canary rollout: the share of traffic (percent) the new version takes while it bakes; "
        "None: it takes all traffic at once",
    )
    bake_s: float | None = Field(
        default=None, gt=0, description="seconds the canary bakes before it is promoted (with canary_percent)"
    )
    request_id: str = RequestId


class ModelDeployed(EventDetail):
    """A model version serves on a target; the version it replaced is recorded for rollback."""

    SOURCE: ClassVar[str] = "docllm.deploy"
    DETAIL_TYPE: ClassVar[str] = "Model Deployed"

    model_version: str
    family: str
    target: DeployTargetName
    endpoint: str = Field(description="URL (local), endpoint name (sagemaker) or imported model ARN (bedrock)")
    previous_version: str | None = None
    deployment_id: str
    request_id: str | None = FollowsRequest


class CanaryStarted(EventDetail):
    """A version takes a share of a target's traffic beside the stable one while it bakes (local target);
    "Model Deployed" follows when it is promoted, "Canary Aborted" when it is dropped."""

    SOURCE: ClassVar[str] = "docllm.deploy"
    DETAIL_TYPE: ClassVar[str] = "Canary Started"

    model_version: str
    family: str
    target: DeployTargetName
    endpoint: str = Field(description="the canary engine's URL")
    stable_version: str = Field(description="the version that keeps the rest of the traffic")
    canary_percent: float = Field(gt=0, lt=100, description="the share of requests the canary takes, percent")
    bake_until: str = Field(description="when the bake period ends (ISO 8601, UTC); promoted then if quiet")
    deployment_id: str
    request_id: str | None = FollowsRequest


class CanaryAborted(EventDetail):
    """A canary was dropped before promotion: the stable version takes all traffic again."""

    SOURCE: ClassVar[str] = "docllm.deploy"
    DETAIL_TYPE: ClassVar[str] = "Canary Aborted"

    model_version: str = Field(description="the canary's version")
    family: str
    target: DeployTargetName
    stable_version: str = Field(description="the version that serves all traffic now")
    reason: str
    deployment_id: str
    request_id: str | None = FollowsRequest


# --- rollback and incidents --------------------------------------------------

IncidentSeverity = Literal["info", "warning", "page"]


class ModelRolledBack(EventDetail):
    """An alarm on a serving version rolled it back: the restored version serves (verified), and the
    registry holds the bad one as RolledBack (Rejected, with the alarm as its reason)."""

    SOURCE: ClassVar[str] = "docllm.rollback"
    DETAIL_TYPE: ClassVar[str] = "Model Rolled Back"

    model_version: str = Field(description="the version rolled back (the bad one)")
    restored_version: str = Field(description="the version that serves in its place")
    family: str
    target: DeployTargetName
    alarm_name: str = Field(description="the alarm that opened the incident")
    incident_id: str
    action: Literal["redeploy", "abort_canary"] = Field(
        default="redeploy",
        description="redeploy: the restored version was deployed again; abort_canary: the "
        "bad version was a canary, dropped while the stable version kept serving",
    )
    verified: bool = Field(default=True, description="the target was seen serving the restored version")


class IncidentOpened(EventDetail):
    """An alarm on a serving version opened an incident (``docllm incidents``)."""

    SOURCE: ClassVar[str] = "docllm.rollback"
    DETAIL_TYPE: ClassVar[str] = "Incident Opened"

    incident_id: str
    target: DeployTargetName
    family: str | None = None
    bad_version: str
    restored_version: str | None = Field(default=None, description="None: nothing to roll back to, it keeps serving")
    severity: IncidentSeverity
    alarm_name: str
    summary: str = Field(description="one line for a person")


class IncidentCloseRequested(EventDetail):
    """A person closes an incident with its cause (``docllm incident close ID --cause ...``)."""

    SOURCE: ClassVar[str] = "docllm.rollback"
    DETAIL_TYPE: ClassVar[str] = "Incident Close Requested"

    incident_id: str
    cause: str = Field(min_length=1, max_length=4000, description="the root cause, as found")
    closed_by: str = Field(min_length=1, description="who closes it (the local user, as the CLI names them)")
    request_id: str = RequestId


class IncidentClosed(EventDetail):
    """An incident was closed with its cause."""

    SOURCE: ClassVar[str] = "docllm.rollback"
    DETAIL_TYPE: ClassVar[str] = "Incident Closed"

    incident_id: str
    cause: str
    closed_by: str
    request_id: str | None = FollowsRequest


# --- continuous training (pipelines) ---------------------------------------


class FamilyMarkedStale(EventDetail):
    """A document matching a family's data filter was added, changed or removed since its last run."""

    SOURCE: ClassVar[str] = "docllm.pipelines"
    DETAIL_TYPE: ClassVar[str] = "Family Marked Stale"

    family: str
    doc_key: str
    change: Literal["added", "changed", "removed"]
    documents: int = Field(ge=0, description="documents changed since the last run started, this one included")
    tokens: int = Field(ge=0, description="their tokens (ingestion's estimate)")
    revision: str = Field(description="the document record's revision that made the change")


class PipelineRunRequested(EventDetail):
    """Run a family's pipeline now (``docllm pipeline run``): bypasses the debounce, not "one run at a
    time" (a run in progress is superseded: cancelled, its job stopped)."""

    SOURCE: ClassVar[str] = "docllm.pipelines"
    DETAIL_TYPE: ClassVar[str] = "Pipeline Run Requested"

    family: str
    requested_by: str = Field(default="", description="who asked (the local user)")
    request_id: str = RequestId


class PipelineCancelRequested(EventDetail):
    """Cancel a family's run in progress (``docllm pipeline cancel``)."""

    SOURCE: ClassVar[str] = "docllm.pipelines"
    DETAIL_TYPE: ClassVar[str] = "Pipeline Cancel Requested"

    family: str
    run_id: str | None = Field(
        default=None, description="cancel only this run (a redelivered cancel must not hit a newer run)"
    )
    requested_by: str = ""
    request_id: str = RequestId


class PipelineRunStarted(EventDetail):
    """A family's pipeline run started; "Training Requested" with the same request_id follows."""

    SOURCE: ClassVar[str] = "docllm.pipelines"
    DETAIL_TYPE: ClassVar[str] = "Pipeline Run Started"

    family: str
    run_id: str
    trigger: Literal["change", "schedule", "manual"]
    reason: str
    documents: int = Field(ge=0, description="changed documents the run trains on")
    tokens: int = Field(ge=0)
    config_sha256: str = Field(description="the family's configuration")
    config_version: str = Field(description="the families document's version and digest")
    supersedes: str | None = Field(default=None, description="the run this one superseded, if any")
    request_id: str = Field(description="= run_id: every event of the run's chain repeats it")


class PipelineRunEnded(EventDetail):
    """A family's pipeline run ended: deployed, decided, failed, cancelled or superseded."""

    SOURCE: ClassVar[str] = "docllm.pipelines"
    DETAIL_TYPE: ClassVar[str] = "Pipeline Run Ended"

    family: str
    run_id: str
    state: Literal["cancelled", "superseded", "failed", "decided", "deployed"]
    reason: str
    model_version: str | None = None
    stopped_jobs: list[str] = Field(default_factory=list, description="jobs stopped by a cancellation")
    request_id: str = Field(description="= run_id")


class StageFailed(EventDetail):
    """A pipeline stage gave up (a job failed, an input was missing)."""

    SOURCE: ClassVar[str] = "docllm.pipeline"
    DETAIL_TYPE: ClassVar[str] = "Stage Failed"

    stage: str
    subject: str = Field(description="what failed: a job name, a dataset version…")
    reason: str
    request_id: str | None = Field(default=None, description="the request whose chain failed, when known")


CONTRACTS: tuple[type[EventDetail], ...] = (
    DocumentProcessed,
    DocumentQuarantined,
    DocumentRemoved,
    DocumentReprocessRequested,
    DocumentIndexed,
    DatasetBuildRequested,
    DatasetBuilt,
    TokenizerTrained,
    ShardsBuilt,
    RetrieverTrainingRequested,
    RetrieverTrained,
    TrainingRequested,
    ModelTrained,
    EvaluationRequested,
    EvaluationCompleted,
    ModelReviewSubmitted,
    ModelApproved,
    ModelRejected,
    DeploymentRequested,
    ModelDeployed,
    CanaryStarted,
    CanaryAborted,
    ModelRolledBack,
    IncidentOpened,
    IncidentCloseRequested,
    IncidentClosed,
    StageFailed,
    FamilyMarkedStale,
    PipelineRunRequested,
    PipelineCancelRequested,
    PipelineRunStarted,
    PipelineRunEnded,
)

_BY_TYPE = {(c.SOURCE, c.DETAIL_TYPE): c for c in CONTRACTS}

D = TypeVar("D", bound=EventDetail)


def to_bus(detail: EventDetail, *, resources: list[str] | None = None) -> BusEvent:
    """Wrap a detail in the EventBridge envelope."""
    return BusEvent(
        source=detail.SOURCE,
        detail_type=detail.DETAIL_TYPE,
        detail=detail.model_dump(mode="json"),
        resources=resources or [],
    )


def contract_for(source: str, detail_type: str) -> type[EventDetail]:
    try:
        return _BY_TYPE[(source, detail_type)]
    except KeyError as e:
        raise ContractError(f"no contract for source={source!r} detail-type={detail_type!r}") from e


def parse_detail(event: BusEvent | dict[str, Any], model: type[D]) -> D:
    """Validate an event's detail against ``model``, raising :class:`ContractError`."""
    bus = event if isinstance(event, BusEvent) else BusEvent.model_validate(event)
    if (bus.source, bus.detail_type) != (model.SOURCE, model.DETAIL_TYPE):
        raise ContractError(f"expected {model.SOURCE}/{model.DETAIL_TYPE}, got {bus.source}/{bus.detail_type}")
    try:
        return model.model_validate(bus.detail)
    except ValidationError as e:
        raise ContractError(f"{model.DETAIL_TYPE}: {e}") from e
