"""Retriever stage: train the dual encoder as a platform job, gate it, and let the index use the gated one.

Issue 18's learned component, governed like the other models:

* **Launch** (:func:`handle_request`): on "Tokenizer Trained" of a family whose ``families.yaml``
  entry has a ``retriever`` section (EncoderSettings overrides, optionally ``questions_uri``), or on
  "Retriever Training Requested" (``docllm retriever train``). The version is content-addressed
  (``encoder_version(settings, dataset, tokenizer)``): a version trained before is announced again,
  not retrained. The job is :mod:`docllm.jobs.retriever_job` under the SageMaker contract.
* **Completion and gate** (:func:`complete_job`, found by the job-events stage by its stage name):
  the job wrote ``card.json``/``result.json`` (versions of its dataset and tokenizer, every file's
  sha256) and ``validation.json`` (BM25 alone against BM25 + this encoder on validation questions,
  :mod:`docllm.search.retriever_gate`). The record (``pk="retrievers"``, ``sk=version``) is written
  with the gate's verdict; an approved encoder becomes the active one (``sk="@active"``) in the same
  transaction as "Retriever Trained". A rejected one is kept on record, never used.
* **Use** (:class:`ActiveEncoder`): the index's ``encoder_source``. It reads the active record (at
  most every few seconds), fetches that version's files into a local cache, refuses any file whose
  sha256 differs from the record's (and the tokenizer's from the platform's tokenizer record), and
  hands the index the loaded encoder. So every model file the index uses is traceable to a platform
  record, which names its dataset and tokenizer versions and its job.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from docllm.bootstrap import Platform
from docllm.events.contracts import (
    RetrieverTrained,
    RetrieverTrainingRequested,
    StageFailed,
    TokenizerTrained,
    contract_for,
    parse_detail,
    to_bus,
)
from docllm.events.envelope import BusEvent
from docllm.exceptions import PermanentError
from docllm.ports.jobs import JobSpec
from docllm.ports.objects import split_uri
from docllm.ports.state import Put, Write
from docllm.records import JobRecord, utcnow
from docllm.search.encoder import CARD_FILE, ENCODER_FILE, TOKENIZER_FILE, EncoderCard, EncoderSettings, TextEncoder
from docllm.service_layer.jobs import Completion, job_name, launch, read_result
from docllm.service_layer.outbox import commit

STAGE = "retriever"
RETRIEVERS_PK = "retrievers"
#: The record naming the encoder the index uses (``{"version": ..., "since": ...}``).
ACTIVE_SK = "@active"
VALIDATION_FILE = "validation.json"
#: Seconds a process goes on with the encoder it has before reading the active record again (one state read).
ACTIVE_CHECK_S = 5.0
#: Files of an encoder directory, each checked against the record before use.
MODEL_FILES = (ENCODER_FILE, TOKENIZER_FILE, CARD_FILE)

log = logging.getLogger(__name__)


class RetrieverRecord(BaseModel):
    """State record ``pk="retrievers"``, ``sk=version``: what was trained from what, and the gate's verdict."""

    version: str
    status: Literal["Approved", "Rejected"]
    reason: str
    dataset_version: str
    tokenizer_version: str
    artifacts_uri: str
    job_name: str
    files: dict[str, str] = Field(description="sha256 of each model file (encoder.npz, tokenizer.model, card.json)")
    card: dict[str, Any]
    metrics: dict[str, float] = Field(default_factory=dict)
    by_type: dict[str, dict[str, float]] = Field(default_factory=dict)
    family: str | None = None
    request_id: str | None = None
    gated_at: str = Field(default_factory=utcnow)


def retriever_prefix(artifact_bucket: str, version: str) -> str:
    """``s3://<bucket>/retrievers/<version>/``."""
    return f"s3://{artifact_bucket}/retrievers/{version}/"


def settings_of(overrides: dict[str, Any]) -> tuple[EncoderSettings, str | None]:
    """EncoderSettings from a family's ``retriever`` section or a request, and its ``questions_uri``.

    >>> settings_of({"epochs": 1, "questions_uri": "s3://b/q/"})[0].epochs
    1
    """
    fields = {k: v for k, v in overrides.items() if k != "questions_uri"}
    try:
        settings = EncoderSettings.model_validate(fields)
    except ValueError as e:
        raise PermanentError(f"invalid retriever settings: {e}") from e
    uri = overrides.get("questions_uri")
    return settings, str(uri) if uri else None


def retriever_job_spec(
    *,
    version: str,
    dataset_version: str,
    tokenizer_uri: str,
    settings: EncoderSettings,
    artifact_bucket: str,
    name: str,
    questions_uri: str | None = None,
) -> JobSpec:
    """The job that trains (and validates) one encoder version."""
    from docllm.dataset.versions import dataset_prefix

    output = retriever_prefix(artifact_bucket, version)
    hp = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in settings.model_dump().items()}
    channels = {"dataset": dataset_prefix(artifact_bucket, dataset_version), "tokenizer": tokenizer_uri}
    if questions_uri:
        channels["questions"] = questions_uri
    return JobSpec(
        name=name,
        image="train",  # torch and sentencepiece; CPU is enough (minutes)
        entry_point="docllm.jobs.retriever_job",
        hyperparameters={**hp, "output_uri": output, "encoder_version": version},
        channels=channels,
        output_uri=output,
        instance_type="ml.m5.2xlarge",
        max_runtime_s=2 * 3600,
        tags={"docllm-stage": STAGE, "docllm-dataset": dataset_version},
    )


def find_retriever(p: Platform, version: str) -> RetrieverRecord | None:
    item = p.state.get(RETRIEVERS_PK, version)
    return RetrieverRecord.model_validate(item) if item else None


def active_retriever(p: Platform) -> RetrieverRecord | None:
    """The gated encoder the index uses, or None (BM25 alone)."""
    pointer = p.state.get(RETRIEVERS_PK, ACTIVE_SK)
    return find_retriever(p, str(pointer["version"])) if pointer else None


def list_retrievers(p: Platform) -> list[RetrieverRecord]:
    """Every recorded encoder, oldest version key first (the active pointer left out)."""
    return [RetrieverRecord.model_validate(item) for sk, item in p.state.query(RETRIEVERS_PK) if sk != ACTIVE_SK]


def retriever_trained(record: RetrieverRecord) -> RetrieverTrained:
    """The stage's event, from its record (a completion, or a version announced again)."""
    return RetrieverTrained(
        retriever_version=record.version,
        dataset_version=record.dataset_version,
        tokenizer_version=record.tokenizer_version,
        artifacts_uri=record.artifacts_uri,
        encoder_sha256=record.files.get(ENCODER_FILE, ""),
        tokenizer_sha256=record.files.get(TOKENIZER_FILE, ""),
        approved=record.status == "Approved",
        reason=record.reason,
        metrics=record.metrics,
        family=record.family,
        request_id=record.request_id,
    )


def handle_request(p: Platform, raw: dict[str, Any]) -> dict[str, Any]:
    """ "Tokenizer Trained" of a family with a ``retriever`` section, or "Retriever Training Requested"."""
    from docllm.tokenizer.artifacts import find_tokenizer

    bus = BusEvent.model_validate(raw)
    contract = contract_for(bus.source, bus.detail_type)
    overrides: dict[str, Any]
    if contract is TokenizerTrained:
        trained = parse_detail(bus, TokenizerTrained)
        section = _family_section(trained.family)
        if section is None:
            return {"outcome": "skipped: the family trains no retriever", "family": trained.family}
        # Not the family run's request id: the retriever is a side branch, and a "Stage Failed" carrying
        # that id would fail the family's pipeline run, whose model chain does not depend on it.
        overrides, family, request_id = section, trained.family, None
        dataset_version, tokenizer_version = trained.dataset_version, trained.tokenizer_version
    elif contract is RetrieverTrainingRequested:
        asked = parse_detail(bus, RetrieverTrainingRequested)
        overrides = dict(asked.settings)
        if asked.questions_uri:
            overrides["questions_uri"] = asked.questions_uri
        family, request_id = asked.family, asked.request_id
        dataset_version, tokenizer_version = asked.dataset_version, asked.tokenizer_version
    else:
        raise PermanentError(f"the retriever stage does not take {bus.detail_type!r}")
    settings, questions_uri = settings_of(overrides)
    from docllm.search.encoder import encoder_version

    version = encoder_version(settings, dataset_version, tokenizer_version)
    existing = find_retriever(p, version)
    if existing is not None:
        # Trained and gated before: announce the same outcome again (no state changes; consumers are idempotent).
        p.bus.publish([to_bus(retriever_trained(existing))])
        return {"retriever_version": version, "outcome": "exists", "status": existing.status}
    tokenizer = find_tokenizer(p.state, tokenizer_version)
    if tokenizer is None:
        reason = f"tokenizer {tokenizer_version} is not recorded: train it first (docllm dataset build / docllm train)"
        commit(p, [], [StageFailed(stage=STAGE, subject=version, reason=reason, request_id=request_id)])
        return {"retriever_version": version, "outcome": "failed", "reason": reason}
    name = job_name(STAGE, version.removeprefix("enc-"), p)
    spec = retriever_job_spec(
        version=version,
        dataset_version=dataset_version,
        tokenizer_uri=tokenizer.artifacts_uri,
        settings=settings,
        artifact_bucket=p.settings.artifact_bucket,
        name=name,
        questions_uri=questions_uri,
    )
    context = {
        "retriever_version": version,
        "dataset_version": dataset_version,
        "tokenizer_version": tokenizer_version,
        "family": family or "",
        "request_id": request_id or "",
    }
    outcome = launch(p, spec, STAGE, context)
    return {"retriever_version": version, "job": name, "outcome": outcome}


def _family_section(name: str | None) -> dict[str, Any] | None:
    if not name:
        return None
    from docllm.training.families import family as family_named

    section = getattr(family_named(name), "retriever", None)
    return dict(section) if section is not None else None


def complete_job(p: Platform, record: JobRecord) -> Completion:
    """The job finished: record the encoder with the gate's verdict; an approved one becomes active."""
    from docllm.search.retriever_gate import GateFigures

    ctx = record.context
    card = EncoderCard.model_validate(read_result(p, record.output_uri))
    if card.version != ctx["retriever_version"]:
        raise PermanentError(f"{record.output_uri}: card version {card.version} is not {ctx['retriever_version']}")
    if (card.dataset_version, card.tokenizer_version) != (ctx["dataset_version"], ctx["tokenizer_version"]):
        raise PermanentError(f"{record.output_uri}: the card names other inputs than the job was given")
    bucket, prefix = split_uri(record.output_uri if record.output_uri.endswith("/") else record.output_uri + "/")
    figures = GateFigures.model_validate_json(p.objects.get(bucket, prefix + VALIDATION_FILE))
    card_sha = hashlib.sha256(p.objects.get(bucket, prefix + CARD_FILE)).hexdigest()
    rec = RetrieverRecord(
        version=card.version,
        status="Approved" if figures.approved else "Rejected",
        reason=figures.reason,
        dataset_version=card.dataset_version,
        tokenizer_version=card.tokenizer_version,
        artifacts_uri=record.output_uri,
        job_name=record.name,
        files={ENCODER_FILE: card.encoder_sha256, TOKENIZER_FILE: card.tokenizer_sha256, CARD_FILE: card_sha},
        card=card.model_dump(mode="json"),
        metrics=figures.metrics(),
        by_type=figures.by_type,
        family=ctx.get("family") or None,
        request_id=ctx.get("request_id") or None,
    )
    writes: list[Write] = [Put(RETRIEVERS_PK, rec.version, rec.model_dump(mode="json"))]
    if figures.approved:
        writes.append(Put(RETRIEVERS_PK, ACTIVE_SK, {"version": rec.version, "since": rec.gated_at}))
    return Completion(event=retriever_trained(rec), writes=writes)


class ActiveEncoder:
    """``encoder_source`` of the platform's index: the gated encoder, loaded from verified files.

    Reads the active record at most every ``ttl_s`` seconds (default :data:`ACTIVE_CHECK_S`). A version
    is fetched once into ``cache_dir/<version>/``; before loading, every file's sha256 must equal the record's and the
    tokenizer's the platform's tokenizer record's. A failure keeps the encoder in use (or none) and
    is logged: search never stops because a model could not be loaded.
    """

    def __init__(self, p: Platform, cache_dir: Path, *, ttl_s: float | None = None) -> None:
        self._p = p
        self._cache = Path(cache_dir)
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._version: str | None = None
        self._encoder: TextEncoder | None = None

    @property
    def _ttl(self) -> float:
        return ACTIVE_CHECK_S if self._ttl_s is None else self._ttl_s

    def __call__(self) -> TextEncoder | None:
        now = time.monotonic()
        if now - self._checked_at < self._ttl:
            return self._encoder
        with self._lock:
            if now - self._checked_at < self._ttl:
                return self._encoder
            self._checked_at = now
            try:
                record = active_retriever(self._p)
                if record is None:
                    self._version, self._encoder = None, None
                elif record.version != self._version:
                    self._encoder, self._version = load_verified(self._p, record, self._cache), record.version
            except Exception as e:  # keep serving with what was loaded; the log says why
                log.warning("retriever: keeping %s: %s: %s", self._version or "BM25 alone", type(e).__name__, e)
            return self._encoder


def load_verified(p: Platform, record: RetrieverRecord, cache_dir: Path) -> TextEncoder:
    """The record's encoder from ``cache_dir/<version>/`` (fetched if absent), every file checked.

    Raises
    ------
    PermanentError
        A file that does not match the record, or a tokenizer that is not the platform's record of it.
    """
    from docllm.tokenizer.artifacts import find_tokenizer

    tokenizer = find_tokenizer(p.state, record.tokenizer_version)
    if tokenizer is None or tokenizer.model_sha256 != record.files.get(TOKENIZER_FILE):
        raise PermanentError(
            f"retriever {record.version}: its tokenizer is not the recorded {record.tokenizer_version}"
        )
    directory = cache_dir / record.version
    bucket, prefix = split_uri(
        record.artifacts_uri if record.artifacts_uri.endswith("/") else record.artifacts_uri + "/"
    )
    directory.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        path = directory / name
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != record.files[name]:
            data = p.objects.get(bucket, prefix + name)
            if hashlib.sha256(data).hexdigest() != record.files[name]:
                raise PermanentError(
                    f"retriever {record.version}: {name} in {record.artifacts_uri} does not match its record"
                )
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)
    encoder = TextEncoder.load(directory)  # checks the card's own sha256s too
    if encoder.version != record.version:
        raise PermanentError(f"retriever {record.version}: the card names {encoder.version}")
    return encoder


def encoder_cache_dir(p: Platform) -> Path:
    """Where a process keeps fetched encoders: the data directory locally, /tmp on Lambda."""
    if p.settings.data_dir is not None:
        return Path(p.settings.data_dir) / "retrievers"
    return Path("/tmp/docllm-retrievers")  # Lambda's only writable path
