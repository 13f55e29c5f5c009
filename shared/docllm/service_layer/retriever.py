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
* **Manifest** (:func:`issue_manifest`): before that commit, an approved encoder gets a signed
  compliance manifest (:mod:`docllm.manifest.retriever`: its files by sha256, its dataset, tokenizer,
  job and the gate's decision), stored write-once at ``retrievers/<version>.json`` in the compliance
  store with the platform's signing key; the record names it (``manifest_uri``, ``manifest_sha256``).
* **Use** (:class:`ActiveEncoder`): the index's ``encoder_source``. It reads the active record (at
  most every few seconds), checks that record's manifest (the stored bytes are the recorded ones, the
  signature verifies with a trusted key, its subjects are the record's files), fetches that version's
  files into a local cache, refuses any file whose sha256 differs from the manifest's (and the
  tokenizer's from the platform's tokenizer record), and hands the index the loaded encoder. So every
  model file the index uses is traceable to a signed manifest of the platform, which names its dataset
  and tokenizer versions and its job (:func:`verify_retriever` re-checks it all on demand).
"""

from __future__ import annotations

import hashlib
import json
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
from docllm.exceptions import ConflictError, NotFoundError, PermanentError
from docllm.manifest.canonical import canonical_json, sha256_hex
from docllm.manifest.exceptions import ManifestError, ManifestInputError, ManifestNotFoundError
from docllm.manifest.inputs import Artefact, JobProvenance
from docllm.manifest.report import Mismatch
from docllm.manifest.retriever import (
    RetrieverInputs,
    RetrieverVerification,
    build_retriever_statement,
    retriever_problems,
    subject_digests,
)
from docllm.manifest.statement import KIND_DATASET, KIND_TOKENIZER
from docllm.ports.jobs import JobSpec
from docllm.ports.objects import split_uri
from docllm.ports.signer import PublicKeys, as_keys, envelope_payload
from docllm.ports.state import Put, Write
from docllm.records import JobRecord, utcnow
from docllm.search.encoder import CARD_FILE, ENCODER_FILE, TOKENIZER_FILE, EncoderCard, EncoderSettings, TextEncoder
from docllm.service_layer.jobs import Completion, job_name, launch, read_result
from docllm.service_layer.manifest import (
    TrustedKeys,
    check_digest,
    decode_envelope,
    hash_object,
    hash_prefix,
    publish_public_key,
    signature_mismatch,
)
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
    manifest_uri: str | None = Field(default=None, description="its signed manifest (approved ones only)")
    manifest_sha256: str | None = Field(default=None, description="sha256 of the stored manifest's bytes")


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
    result = read_result(p, record.output_uri)
    card = EncoderCard.model_validate(result)
    if card.version != ctx["retriever_version"]:
        raise PermanentError(f"{record.output_uri}: card version {card.version} is not {ctx['retriever_version']}")
    if (card.dataset_version, card.tokenizer_version) != (ctx["dataset_version"], ctx["tokenizer_version"]):
        raise PermanentError(f"{record.output_uri}: the card names other inputs than the job was given")
    bucket, prefix = split_uri(record.output_uri if record.output_uri.endswith("/") else record.output_uri + "/")
    validation = p.objects.get(bucket, prefix + VALIDATION_FILE)
    figures = GateFigures.model_validate_json(validation)
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
    if figures.approved:  # signed and stored before the commit: a retry finds it and adopts it
        inputs = manifest_inputs(p, rec, record, result, validation)
        rec.manifest_uri, rec.manifest_sha256 = issue_manifest(p, rec.version, build_retriever_statement(inputs))
    writes: list[Write] = [Put(RETRIEVERS_PK, rec.version, rec.model_dump(mode="json"))]
    if figures.approved:
        writes.append(Put(RETRIEVERS_PK, ACTIVE_SK, {"version": rec.version, "since": rec.gated_at}))
    return Completion(event=retriever_trained(rec), writes=writes)


# --- the signed manifest -------------------------------------------------------------------------


def manifest_key(version: str) -> str:
    """Compliance store key of a retriever version's manifest (``retrievers/<version>.json``)."""
    return f"{RETRIEVERS_PK}/{version}.json"


def manifest_inputs(
    p: Platform, rec: RetrieverRecord, job: JobRecord, result: dict[str, Any], validation: bytes
) -> RetrieverInputs:
    """What the manifest of ``rec`` states, from the records (nothing retyped).

    Only what an attempt reads the same every time (no clock, no issuer identity): a redelivery
    builds the same statement and adopts the one its earlier attempt stored.

    Raises
    ------
    ManifestInputError
        A stored model file is not the one the card names (the manifest attests the bytes that are
        there), or the tokenizer the encoder was trained with is not recorded.
    """
    from docllm.dataset.versions import DATASETS_PK, DatasetSummary, dataset_prefix
    from docllm.tokenizer.artifacts import find_tokenizer

    bucket, prefix = split_uri(rec.artifacts_uri if rec.artifacts_uri.endswith("/") else rec.artifacts_uri + "/")
    for name in MODEL_FILES:
        if hash_object(p, bucket, prefix + name)[0] != rec.files[name]:
            raise ManifestInputError(f"retriever {rec.version}: the stored {name} is not the file its card names")
    tokenizer = find_tokenizer(p.state, rec.tokenizer_version)
    if tokenizer is None:
        raise ManifestInputError(f"retriever {rec.version}: no tokenizer record tokenizers/{rec.tokenizer_version}")
    dataset_manifest = None
    dataset = p.state.get(DATASETS_PK, rec.dataset_version)
    if dataset is not None:
        uri = DatasetSummary.model_validate(dataset).manifest_uri
        sha, size = hash_object(p, *split_uri(uri))
        dataset_manifest = Artefact(name="manifest.json", uri=uri, sha256=sha, size=size)
    uri_prefix = f"s3://{bucket}/{prefix}"
    provenance = result.get("provenance")  # code and environment, when the job recorded them
    return RetrieverInputs(
        version=rec.version,
        artifacts_uri=uri_prefix,
        files=rec.files,
        settings=dict(rec.card.get("settings") or {}),
        card=rec.card,
        family=rec.family,
        dataset_version=rec.dataset_version,
        dataset_uri=dataset_prefix(p.settings.artifact_bucket, rec.dataset_version),
        dataset_manifest=dataset_manifest,
        tokenizer_version=rec.tokenizer_version,
        tokenizer_uri=tokenizer.artifacts_uri,
        tokenizer_files=hash_prefix(p, tokenizer.artifacts_uri),
        job_name=job.name,
        started_on=job.created_at,
        provenance={"train": JobProvenance.model_validate(provenance)} if isinstance(provenance, dict) else {},
        validation=Artefact(
            name=VALIDATION_FILE, uri=uri_prefix + VALIDATION_FILE, sha256=sha256_hex(validation), size=len(validation)
        ),
        status=rec.status,
        reason=rec.reason,
        metrics=rec.metrics,
        by_type=rec.by_type,
        builder_id=f"urn:docllm:builder:{p.settings.backend}:{p.settings.stage}",
    )


def issue_manifest(p: Platform, version: str, statement: dict[str, Any]) -> tuple[str, str]:
    """Sign ``statement`` and store it write-once at :func:`manifest_key`; return ``(uri, sha256)``.

    Idempotent: a redelivery that finds the same statement stored (an attempt that crashed before its
    commit) adopts it, without signing again.

    Raises
    ------
    ManifestError
        The key holds another statement: a write-once record is never replaced, so this cannot be retried.
    """
    key, payload = manifest_key(version), canonical_json(statement)
    try:
        stored = p.compliance.get(key)
    except NotFoundError:
        publish_public_key(p)  # the key first: no manifest is stored without its public key beside it
        body = canonical_json(p.signer.sign(payload))
        try:
            return p.compliance.put_once(key, body), sha256_hex(body)
        except ConflictError:
            stored = p.compliance.get(key)  # a concurrent attempt stored it first
    if _payload(stored) != payload:
        raise ManifestError(f"{key} already holds another statement of retriever {version} (write-once)")
    return p.compliance.uri(key), sha256_hex(stored)


def _payload(body: bytes) -> bytes | None:
    try:
        return envelope_payload(json.loads(body))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _check_manifest(
    p: Platform, record: RetrieverRecord, trusted: TrustedKeys, report: RetrieverVerification
) -> dict[str, Any] | None:
    """Check the manifest ``record`` names, adding each problem to ``report``; return its statement.

    The stored bytes must be the recorded ones (sha256), the signature must verify with a trusted
    key, the statement must be this version's, and its subjects the record's files. The files
    themselves are not read here.
    """
    key, found = report.manifest_key, report.mismatches
    if record.manifest_uri is None:
        found.append(Mismatch(kind="missing", subject=key, detail=f"retriever {record.version} records no manifest"))
        return None
    try:
        body = p.compliance.get(key)
    except NotFoundError as e:
        found.append(Mismatch(kind="missing", subject=record.manifest_uri, detail=str(e)))
        return None
    report.manifest_sha256 = sha256_hex(body)
    if report.manifest_sha256 != record.manifest_sha256:
        found.append(
            Mismatch(
                kind="state",
                subject=key,
                expected=record.manifest_sha256,
                actual=report.manifest_sha256,
                detail="the stored manifest is not the one the retriever's record names",
            )
        )
    try:
        envelope = json.loads(body)
        statement = decode_envelope(body)
    except (ValueError, ManifestError) as e:
        found.append(Mismatch(kind="statement", subject=key, detail=str(e)))
        return None
    checked_with: dict[str, str] = {}
    signature = signature_mismatch(key, envelope, trusted, checked_with)
    if signature is not None:
        found.append(signature)
    report.key_id = checked_with.get(key)
    problems = retriever_problems(statement, record.version)
    found += [Mismatch(kind="statement", subject=key, detail=problem) for problem in problems]
    if problems:
        return None
    subjects = subject_digests(statement)
    for name in sorted(subjects.keys() | record.files.keys()):
        if subjects.get(name) != record.files.get(name):
            found.append(
                Mismatch(
                    kind="state",
                    subject=name,
                    expected=subjects.get(name),
                    actual=record.files.get(name),
                    detail="the record's sha256 of this file is not the manifest's",
                )
            )
    return statement


def verify_retriever(p: Platform, version: str, *, public_key: PublicKeys | None = None) -> RetrieverVerification:
    """Re-check a retriever's manifest and every file it names against the stored objects.

    The manifest's bytes, signature (with ``public_key`` only when given, else the key its signature
    names as published in the compliance store, as ``docllm manifest verify``) and subjects; then
    every subject, tokenizer file, dataset manifest and ``validation.json`` re-hashed from the store,
    and the tokenizer against the platform's tokenizer record.

    Raises
    ------
    NotFoundError
        No such retriever, or it has no manifest (rejected, or approved before manifests were issued).
    """
    from docllm.tokenizer.artifacts import find_tokenizer

    record = find_retriever(p, version)
    if record is None:
        raise NotFoundError(f"no retriever {version}: see docllm retriever list")
    if record.manifest_uri is None:
        why = "rejected encoders get none" if record.status == "Rejected" else "approved before manifests were issued"
        raise ManifestNotFoundError(f"retriever {version} has no manifest ({why})")
    report = RetrieverVerification(
        ok=False, retriever_version=version, manifest_key=manifest_key(version), manifest_uri=record.manifest_uri
    )
    trusted = TrustedKeys(p, as_keys(public_key) if public_key is not None else None)
    statement = _check_manifest(p, record, trusted, report)
    found, checked = report.mismatches, report.checked
    if statement is not None:
        for s in statement["subject"]:
            check_digest(p, s, "model", found, checked)
        predicate = statement.get("predicate", {})
        for d in predicate.get("buildDefinition", {}).get("resolvedDependencies", []):
            kind = (d.get("annotations") or {}).get("kind")
            if kind in (KIND_DATASET, KIND_TOKENIZER) and (d.get("digest") or {}).get("sha256"):
                check_digest(p, d, kind, found, checked)
        for b in predicate.get("runDetails", {}).get("byproducts", []):
            if str(b.get("uri", "")).startswith("s3://"):
                check_digest(p, b, "byproduct", found, checked)
        tokenizer = find_tokenizer(p.state, record.tokenizer_version)
        model_sha = subject_digests(statement).get(TOKENIZER_FILE)
        if tokenizer is None or tokenizer.model_sha256 != model_sha:
            found.append(
                Mismatch(
                    kind="state",
                    subject=f"tokenizers/{record.tokenizer_version}",
                    expected=model_sha,
                    actual=tokenizer.model_sha256 if tokenizer else None,
                    detail="the platform's tokenizer record is not the tokenizer the manifest names",
                )
            )
    report.ok = not found
    return report


class ActiveEncoder:
    """``encoder_source`` of the platform's index: the gated encoder, loaded from verified files.

    Reads the active record at most every ``ttl_s`` seconds (default :data:`ACTIVE_CHECK_S`). A version
    is fetched once into ``cache_dir/<version>/``; before loading, its signed manifest must verify and
    every file's sha256 must equal the manifest's (and the record's), the tokenizer's the platform's
    tokenizer record's (:func:`load_verified`). A refusal keeps the encoder in use (or none, BM25
    alone) and is logged as an error: search never stops because a model could not be loaded.
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
            except PermanentError as e:  # refused: not traceable to its signed manifest and records
                log.error("retriever: refused, keeping %s: %s: %s", self._version or "BM25 alone", type(e).__name__, e)
            except Exception as e:  # keep serving with what was loaded; the log says why
                log.warning("retriever: keeping %s: %s: %s", self._version or "BM25 alone", type(e).__name__, e)
            return self._encoder


def load_verified(p: Platform, record: RetrieverRecord, cache_dir: Path) -> TextEncoder:
    """The record's encoder from ``cache_dir/<version>/`` (fetched if absent), every file checked
    against the record's signed manifest.

    Raises
    ------
    ManifestError
        No manifest, or one that is not the recorded one, not signed by a trusted key, or whose
        subjects are not the record's files.
    PermanentError
        A file that does not match the manifest, or a tokenizer that is not the platform's record of it.
    """
    from docllm.tokenizer.artifacts import find_tokenizer

    tokenizer = find_tokenizer(p.state, record.tokenizer_version)
    if tokenizer is None or tokenizer.model_sha256 != record.files.get(TOKENIZER_FILE):
        raise PermanentError(
            f"retriever {record.version}: its tokenizer is not the recorded {record.tokenizer_version}"
        )
    report = RetrieverVerification(
        ok=False, retriever_version=record.version, manifest_key=manifest_key(record.version)
    )
    statement = _check_manifest(p, record, TrustedKeys(p, None), report)
    if statement is None or report.mismatches:
        problems = "; ".join(f"{m.kind}: {m.subject}: {m.detail}" for m in report.mismatches)
        raise ManifestError(f"retriever {record.version}: not traceable to a signed manifest: {problems}")
    expected = subject_digests(statement)  # the record's files, as _check_manifest checked
    directory = cache_dir / record.version
    bucket, prefix = split_uri(
        record.artifacts_uri if record.artifacts_uri.endswith("/") else record.artifacts_uri + "/"
    )
    directory.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        path = directory / name
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != expected.get(name):
            data = p.objects.get(bucket, prefix + name)
            if hashlib.sha256(data).hexdigest() != expected.get(name):
                raise PermanentError(
                    f"retriever {record.version}: {name} in {record.artifacts_uri} does not match its manifest"
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
