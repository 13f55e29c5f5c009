"""Compliance manifests: gather what the stages recorded, issue a signed chain entry, verify it.

* :func:`gather` reads only what the stages already recorded (state records and stored
  artefacts; nothing retyped) and hashes every artefact by streaming it.
* :func:`issue` signs the statement and stores it write-once as the family's next chain entry;
  it returns the state write for the caller (the gate) to commit through the outbox with its
  event, so the chain record and "Model Approved"/"Model Rejected" appear together.
* :func:`verify` recomputes every digest from the stored bytes, checks the signature and the
  whole chain of the family, and names each mismatch. :func:`show` decodes a manifest.

Example::

    inputs = gather(p, "tiny-s3-20250101-abcd", decision)
    issued = issue(p, inputs)
    commit(p, issued.writes, [ModelApproved(..., manifest_uri=issued.uri, manifest_sha256=issued.sha256)])
    report = verify(p, "tiny-s3-20250101-abcd")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from securesystemslib.signer import Key

from docllm.bootstrap import Platform
from docllm.dataset.versions import DATASETS_PK, DatasetManifest, DatasetSummary
from docllm.exceptions import ConflictError, NotFoundError, PermanentError, TransientError
from docllm.manifest.canonical import canonical_json, sha256_hex
from docllm.manifest.chain import (
    ChainLink,
    RecordedEntry,
    StoredEntry,
    check_chain,
    family_prefix,
    manifest_key,
    sequence_of,
    state_pk,
)
from docllm.manifest.exceptions import ManifestError, ManifestInputError, ManifestNotFoundError
from docllm.manifest.inputs import (
    Artefact,
    BedrockRef,
    DecisionRecord,
    EvaluationRef,
    InitRef,
    InputDocument,
    JobProvenance,
    LoraRef,
    ManifestInputs,
    TeacherRef,
)
from docllm.manifest.report import Mismatch, VerificationReport
from docllm.manifest.statement import (
    KIND_ADAPTER,
    KIND_BASE_MODEL,
    KIND_BEDROCK_MODEL,
    KIND_CUSTOMIZATION_DATA,
    KIND_DATASET,
    KIND_DOCUMENT,
    KIND_INIT,
    KIND_SHARD,
    KIND_TEACHER,
    KIND_TOKENIZER,
    build_statement,
    chain_link_of,
    decision_of,
    model_version_of,
    shape_problems,
)
from docllm.ports.objects import split_uri
from docllm.ports.signer import (
    PublicKeys,
    as_keys,
    computed_key_id,
    envelope_key_ids,
    envelope_payload,
    public_key_from_dict,
    public_key_to_dict,
    verify_envelope,
)
from docllm.ports.state import Item, Put
from docllm.records import DOCS_PK, JOBS_PK, DocumentRecord, JobRecord, utcnow
from docllm.retries import retry_transient
from docllm.service_layer.jobs import MODELS_PK, SHARDS_PK, read_result
from docllm.training.result import InitRecord

EVALUATIONS_PK = "evaluations"
#: Bytes per ranged read when hashing an artefact: weights are never held in memory whole.
HASH_CHUNK = 8 * 1024 * 1024


# --- hashing -----------------------------------------------------------------------------------


def hash_object(p: Platform, bucket: str, key: str, *, size: int | None = None) -> tuple[str, int]:
    """``(sha256, size)`` of the current version of an object, read in ranges of :data:`HASH_CHUNK`."""
    if size is None:
        size = retry_transient(lambda: p.objects.head(bucket, key)).size
    digest = hashlib.sha256()
    for start in range(0, size, HASH_CHUNK):
        end = min(start + HASH_CHUNK, size) - 1
        digest.update(retry_transient(p.objects.get_range, bucket, key, start, end))
    return digest.hexdigest(), size


def hash_prefix(p: Platform, uri: str) -> list[Artefact]:
    """Every object under an ``s3://bucket/prefix/`` with its digest, in key order."""
    bucket, prefix = split_uri(uri if uri.endswith("/") else uri + "/")
    out = []
    for info in list(p.objects.list(bucket, prefix)):
        sha, size = hash_object(p, bucket, info.key, size=info.size)
        out.append(Artefact(name=info.key[len(prefix) :], uri=f"s3://{bucket}/{info.key}", sha256=sha, size=size))
    return out


# --- gather ------------------------------------------------------------------------------------


def _record(p: Platform, pk: str, sk: str, what: str) -> Item:
    item = p.state.get(pk, sk)
    if item is None:
        raise ManifestInputError(f"no {what} record {pk}/{sk}: the manifest is assembled from records, never retyped")
    return item


def _completed_job(p: Platform, stages: tuple[str, ...], output_uri: str) -> str | None:
    """The name of the completed job of ``stages`` that published ``output_uri`` (records keep no back link)."""
    want = output_uri.rstrip("/")
    for name, item in p.state.query(JOBS_PK):
        ended_here = str(item.get("output_uri", "")).rstrip("/") == want
        if item.get("stage") in stages and item.get("status") == "Completed" and ended_here:
            return name
    return None


def _job_provenance(p: Platform, job_name: str | None) -> JobProvenance | None:
    if not job_name:
        return None
    item = p.state.get(JOBS_PK, job_name)
    if item is None:
        return None
    try:
        result = read_result(p, JobRecord.model_validate(item).output_uri)
    except NotFoundError:
        return None
    prov = result.get("provenance")
    return JobProvenance.model_validate(prov) if isinstance(prov, dict) else None


def _evaluation(p: Platform, model_version: str, evaluation_id: str | None) -> Item | None:
    if evaluation_id:
        return _record(p, EVALUATIONS_PK, evaluation_id, "evaluation")
    mine = [item for _, item in p.state.query(EVALUATIONS_PK) if item.get("model_version") == model_version]
    return max(mine, key=lambda i: str(i.get("completed_at", ""))) if mine else None


def _documents(p: Platform, manifest: DatasetManifest) -> list[InputDocument]:
    docs = []
    for d in manifest.documents:
        bucket, version_id = p.settings.raw_bucket, d.version_id
        if version_id is None:
            # Datasets built before version ids were kept: the document's record still names the version
            # it read, as long as the content is the same.
            item = p.state.get(DOCS_PK, d.doc_key)
            rec = DocumentRecord.model_validate(item) if item else None
            if rec is not None and rec.sha256 == d.sha256:
                bucket, version_id = rec.bucket, rec.version_id or None
        docs.append(
            InputDocument(
                doc_key=d.doc_key,
                bucket=bucket,
                version_id=version_id,
                sha256=d.sha256,
                split=d.split,
                service=d.service,
            )
        )
    return docs


def gather(p: Platform, model_version: str, decision: DecisionRecord | dict[str, Any]) -> ManifestInputs:
    """Everything the manifest of ``model_version`` states, from the records of the stages.

    Reads ``models`` (the training summary), the training job's record and ``result.json``,
    ``datasets`` and the dataset's ``manifest.json``, ``tokenizers``, ``shards``,
    ``evaluations`` and the jobs; hashes every file of the export, the tokenizer and the shards.

    Raises
    ------
    ManifestInputError
        A record the manifest needs is missing.
    """
    from docllm.tokenizer.artifacts import find_tokenizer
    from docllm.training.result import TrainingJobResult

    decided = DecisionRecord.model_validate(decision)
    if decided.model_version != model_version:
        raise ManifestInputError(
            f"decision {decided.decision_id} is about {decided.model_version}, not {model_version}"
        )
    model = _record(p, MODELS_PK, model_version, "model")
    if not model.get("job"):
        raise ManifestInputError(f"model {model_version} names no training job: the manifest has nothing to attest")
    if model.get("method") == "bedrock-customization":
        return _gather_bedrock(p, model_version, model, decided)
    train_job = JobRecord.model_validate(_record(p, JOBS_PK, str(model["job"]), "training job"))
    result = read_result(p, train_job.output_uri)
    trained = TrainingJobResult.model_validate(result)
    family_name = str(model.get("family") or trained.family or decided.family)
    dataset_version, tokenizer_version = str(model["dataset_version"]), str(model["tokenizer_version"])

    summary = DatasetSummary.model_validate(_record(p, DATASETS_PK, dataset_version, "dataset"))
    ds_bucket, ds_key = split_uri(summary.manifest_uri)
    ds_raw = retry_transient(lambda: p.objects.get(ds_bucket, ds_key))
    ds_manifest = DatasetManifest.model_validate_json(ds_raw)
    is_lora = model.get("method") == "lora"
    tokenizer = find_tokenizer(p.state, tokenizer_version)
    if tokenizer is None and not is_lora:
        raise ManifestInputError(f"no tokenizer record tokenizers/{tokenizer_version}")
    shards: Item | None = None
    if not is_lora:  # a LoRA job reads the dataset's text: no shards (and its base's tokenizer)
        # Models trained before answer tuning have no shards_key: their shards are the plain pair's.
        shards_key = str(model.get("shards_key") or f"{dataset_version}/{tokenizer_version}")
        shards = _record(p, SHARDS_PK, shards_key, "shards")
    shards_uri = str(shards["shards_uri"]) if shards else None
    evaluation = _evaluation(p, model_version, decided.evaluation_id)

    ev_ref = None
    if evaluation is not None:
        html = evaluation.get("html_uri")
        html_sha = hash_object(p, *split_uri(html))[0] if html else None
        ev_ref = EvaluationRef(
            evaluation_id=str(evaluation["evaluation_id"]),
            report_uri=str(evaluation["report_uri"]),
            report_sha256=str(evaluation["report_sha256"]),
            html_uri=html,
            html_sha256=html_sha,
            job=evaluation.get("job"),
        )
    jobs = {
        "tokenizer": _completed_job(p, ("tokenizer",), tokenizer.artifacts_uri) if tokenizer else None,
        "shards": _completed_job(p, ("shards", "tokenize"), shards_uri) if shards_uri else None,
        "train": train_job.name,
        "evaluate": ev_ref.job if ev_ref else None,
    }
    from docllm.provenance import provenance

    recorded = {"train": result.get("provenance"), "evaluate": None}
    prov = {"train": JobProvenance.model_validate(recorded["train"]) if isinstance(recorded["train"], dict) else None}
    recorded_eval = (evaluation or {}).get("provenance")
    prov["evaluate"] = (
        JobProvenance.model_validate(recorded_eval) if recorded_eval else _job_provenance(p, jobs["evaluate"])
    )
    prov["issuer"] = JobProvenance.model_validate(provenance())
    return ManifestInputs(
        model_version=model_version,
        family=family_name,
        family_definition=_family_definition(family_name),
        train_config=trained.train_config,
        model_config_=trained.model_config_,
        dataset_version=dataset_version,
        tokenizer_version=tokenizer_version,
        split_rule=ds_manifest.split_rule.model_dump(mode="json"),
        export_uri=str(model["export_uri"]),
        model_files=hash_prefix(p, str(model["export_uri"])),
        dataset_manifest=Artefact(
            name="manifest.json", uri=summary.manifest_uri, sha256=sha256_hex(ds_raw), size=len(ds_raw)
        ),
        documents=_documents(p, ds_manifest),
        tokenizer_uri=tokenizer.artifacts_uri if tokenizer else None,
        tokenizer_files=hash_prefix(p, tokenizer.artifacts_uri) if tokenizer else [],
        shards_uri=shards_uri,
        shard_files=hash_prefix(p, shards_uri) if shards_uri else [],
        jobs=jobs,
        provenance={k: v for k, v in prov.items() if v is not None},
        started_on=train_job.created_at,
        finished_on=train_job.updated_at if train_job.status == "Completed" else None,
        metrics={
            "training": dict(model.get("metrics") or {}),
            "evaluation": dict((evaluation or {}).get("metrics") or {}),
            "benchmarks": dict((evaluation or {}).get("benchmarks") or {}),
        },
        evaluation=ev_ref,
        decision=decided,
        builder_id=f"urn:docllm:builder:{p.settings.backend}:{p.settings.stage}",
        teacher=TeacherRef.model_validate(trained.teacher.model_dump()) if trained.teacher else None,
        init=_init_ref(model, trained.init),
        training_reason=str(model["reason"]) if model.get("reason") else None,
        lora=_lora(p, model, result) if is_lora else None,
    )


def _evaluation_ref(p: Platform, evaluation: Item | None) -> EvaluationRef | None:
    if evaluation is None:
        return None
    html = evaluation.get("html_uri")
    return EvaluationRef(
        evaluation_id=str(evaluation["evaluation_id"]),
        report_uri=str(evaluation["report_uri"]),
        report_sha256=str(evaluation["report_sha256"]),
        html_uri=html,
        html_sha256=hash_object(p, *split_uri(html))[0] if html else None,
        job=evaluation.get("job"),
    )


def _gather_bedrock(p: Platform, model_version: str, model: Item, decided: DecisionRecord) -> ManifestInputs:
    """The manifest inputs of an Amazon Bedrock custom model (service_layer/customize.py).

    What the platform made and can re-hash is stated by digest: the source documents and dataset
    manifest, the JSONL files Bedrock read (each checked against the sha256 ``data.json`` recorded
    when it was written: a file changed since is refused, since the manifest would attest data the
    job never read) and Bedrock's metrics files. What Bedrock holds (the base model, the weights) is
    named by ARN, without a digest, and the predicate says so (:data:`BEDROCK_NO_WEIGHTS`)."""
    job = JobRecord.model_validate(_record(p, JOBS_PK, str(model["job"]), "customization job"))
    ctx = job.context
    dataset_version = str(model.get("dataset_version") or ctx.get("dataset_version") or "")
    summary = DatasetSummary.model_validate(_record(p, DATASETS_PK, dataset_version, "dataset"))
    ds_bucket, ds_key = split_uri(summary.manifest_uri)
    ds_raw = retry_transient(lambda: p.objects.get(ds_bucket, ds_key))
    ds_manifest = DatasetManifest.model_validate_json(ds_raw)

    data_uri = str(ctx.get("data_uri") or model.get("data_uri") or "")
    if not data_uri:
        raise ManifestInputError(f"customization job {job.name} records no data_uri")
    data_bucket, data_prefix = split_uri(data_uri)
    try:
        data_summary = json.loads(retry_transient(lambda: p.objects.get(data_bucket, data_prefix + "data.json")))
    except NotFoundError as e:
        raise ManifestInputError(f"no data.json under {data_uri}: what the job read is not recorded") from e
    data_files: list[Artefact] = []
    for name in ("train.jsonl", "validation.jsonl", "data.json"):
        recorded = (data_summary.get("files") or {}).get(name)
        if name != "data.json" and recorded is None:
            continue  # no validation set was given
        sha, size = hash_object(p, data_bucket, data_prefix + name)
        if recorded is not None and sha != recorded:
            raise ManifestInputError(
                f"{data_uri}{name} has sha256 {sha}, data.json recorded {recorded} when the job was started: "
                "the file changed since Bedrock read it"
            )
        data_files.append(Artefact(name=name, uri=f"{data_uri}{name}", sha256=sha, size=size))
    bedrock = BedrockRef(
        custom_model_arn=str(model.get("custom_model_arn") or model["export_uri"]),
        custom_model_name=str(model.get("version") or model_version),
        job_name=job.name,
        job_arn=model.get("job_arn") or None,
        base_model_identifier=str(ctx.get("base_model") or model.get("base_model") or "unknown"),
        base_model_arn=model.get("base_model_arn") or None,
        customization_type=str(ctx.get("customization_type") or data_summary.get("customization_type") or ""),
        hyperparameters=json.loads(ctx.get("hyperparameters") or "{}"),
        data_uri=data_uri,
        data_files=data_files,
        data_summary={k: v for k, v in data_summary.items() if k != "files"},
        output_uri=job.output_uri,
        output_files=hash_prefix(p, job.output_uri),
    )
    evaluation = _evaluation(p, model_version, decided.evaluation_id)
    ev_ref = _evaluation_ref(p, evaluation)
    from docllm.provenance import provenance

    prov: dict[str, JobProvenance] = {"issuer": JobProvenance.model_validate(provenance())}
    if ctx.get("provenance"):  # the code that built the JSONL (the launch)
        prov["customize"] = JobProvenance.model_validate(json.loads(ctx["provenance"]))
    recorded_eval = (evaluation or {}).get("provenance")
    if recorded_eval:  # the code that read Bedrock's metrics
        prov["evaluate"] = JobProvenance.model_validate(recorded_eval)
    family_name = str(model.get("family") or decided.family)
    return ManifestInputs(
        model_version=model_version,
        family=family_name,
        family_definition=_family_definition(family_name),
        train_config={
            "method": "bedrock-customization",
            "customizationType": bedrock.customization_type,
            "baseModelIdentifier": bedrock.base_model_identifier,
            "hyperParameters": bedrock.hyperparameters,
        },
        model_config_={"baseModelArn": bedrock.base_model_arn, "customModelArn": bedrock.custom_model_arn},
        dataset_version=dataset_version,
        tokenizer_version="",  # the base model's own, inside Bedrock
        split_rule=ds_manifest.split_rule.model_dump(mode="json"),
        export_uri=bedrock.custom_model_arn,
        model_files=[],
        dataset_manifest=Artefact(
            name="manifest.json", uri=summary.manifest_uri, sha256=sha256_hex(ds_raw), size=len(ds_raw)
        ),
        documents=_documents(p, ds_manifest),
        tokenizer_uri=None,
        tokenizer_files=[],
        shards_uri=None,
        shard_files=[],
        jobs={"train": job.name, "evaluate": ev_ref.job if ev_ref else None},
        provenance=prov,
        started_on=job.created_at,
        finished_on=job.updated_at if job.status == "Completed" else None,
        metrics={
            "training": dict(model.get("metrics") or {}),
            "evaluation": dict((evaluation or {}).get("metrics") or {}),
            "benchmarks": {},
        },
        evaluation=ev_ref,
        decision=decided,
        builder_id=f"urn:docllm:builder:{p.settings.backend}:{p.settings.stage}",
        bedrock=bedrock,
    )


def _init_ref(model: Item, init: InitRecord | None) -> InitRef | None:
    """A continued model's initial weights: the champion its launcher named (the model record, from the
    job context) and the file the job read (its result.json)."""
    if init is None or not model.get("init_uri"):
        return None
    return InitRef(
        model_version=str(model["init_from"]) if model.get("init_from") else None,
        uri=str(model["init_uri"]),
        weights_file=init.weights_file,
        weights_sha256=init.weights_sha256,
    )


def _lora(p: Platform, model: Item, result: dict[str, Any]) -> LoraRef:
    """What a LoRA model's record and result.json say of its base, adapter, settings and subset."""
    from docllm.lora.result import LoraJobResult

    lora = LoraJobResult.model_validate(result)
    adapter_uri = str(model["adapter_uri"])
    subset_file = None
    if model.get("subset_uri"):
        bucket, key = split_uri(str(model["subset_uri"]))
        sha, size = hash_object(p, bucket, key)
        subset_file = Artefact(name="subset.json", uri=str(model["subset_uri"]), sha256=sha, size=size)
    return LoraRef(
        base_model_uri=lora.base_model.uri,
        base_model_version=lora.base_model.version,
        base_files=lora.base_model.files,
        adapter_uri=adapter_uri,
        adapter_files=hash_prefix(p, adapter_uri),
        settings={
            "r": model.get("r"),
            "alpha": model.get("alpha"),
            "targetModules": model.get("target_modules"),
            "trainableParams": lora.trainable_params,
        },
        subset=lora.subset,
        subset_file=subset_file,
    )


def _family_definition(name: str) -> dict[str, Any] | None:
    from docllm.training.exceptions import UnknownFamilyError
    from docllm.training.families import family

    try:
        return family(name).model_dump(mode="json")
    except UnknownFamilyError:
        return None


# --- issue -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedManifest:
    """A chain entry issued (or found issued) for a decision.

    ``writes`` is the state record for the caller to commit with its event: empty when the state
    already records this entry (a redelivery after the commit).
    """

    family: str
    sequence: int
    key: str
    uri: str
    sha256: str
    outcome: Literal["issued", "adopted", "recorded"]
    writes: list[Put] = field(default_factory=list)


def decode_envelope(body: bytes) -> dict[str, Any]:
    """The statement inside stored envelope bytes (signature not checked)."""
    try:
        envelope = json.loads(body)
        statement = json.loads(envelope_payload(envelope))
    except (ValueError, KeyError, TypeError) as e:
        raise ManifestError(f"not a DSSE envelope of a statement: {e}") from e
    if not isinstance(statement, dict):
        raise ManifestError("the envelope's payload is not a JSON object")
    return statement


def _record_item(decision: DecisionRecord, link: ChainLink, *, key: str, uri: str, sha: str, key_id: str) -> Item:
    return {
        "family": link.family,
        "sequence": link.sequence,
        "model_version": decision.model_version,
        "decision_id": decision.decision_id,
        "status": decision.status,
        "key": key,
        "uri": uri,
        "sha256": sha,
        "previous_sha256": link.previous_sha256,
        "key_id": key_id,
        "issued_at": utcnow(),
    }


def _adopted(p: Platform, decision: DecisionRecord, key: str, body: bytes, outcome: Any) -> IssuedManifest:
    statement = decode_envelope(body)
    link = chain_link_of(statement)
    uri, sha = p.compliance.uri(key), sha256_hex(body)
    item = _record_item(decision, link, key=key, uri=uri, sha=sha, key_id=p.signer.key_id)
    put = Put(state_pk(link.family), f"{link.sequence:08d}", item, if_absent=True)
    return IssuedManifest(link.family, link.sequence, key, uri, sha, outcome, [put])


def issue(p: Platform, inputs: ManifestInputs) -> IssuedManifest:
    """Sign the manifest of ``inputs`` and store it write-once as its family's next chain entry.

    Idempotent per decision: a redelivery finds the entry its earlier attempt stored (recorded in
    the state, or only in the store when the crash came before the commit) and returns it.

    Raises
    ------
    TransientError
        Another decision took the sequence number between reading the head and writing; a retry
        reads the new head.
    """
    decision, family = inputs.decision, inputs.family
    for sk, item in p.state.query(state_pk(family)):
        if item.get("decision_id") == decision.decision_id:
            return IssuedManifest(family, int(sk), str(item["key"]), str(item["uri"]), str(item["sha256"]), "recorded")
    recorded_head = max((int(sk) for sk, _ in p.state.query(state_pk(family))), default=0)
    stored = sorted((n, k) for k in p.compliance.list(family_prefix(family)) if (n := sequence_of(k)) is not None)
    for n, key in stored:
        if n > recorded_head:  # stored but not committed: perhaps ours, from an attempt that crashed
            body = p.compliance.get(key)
            if _decision_id(body) == decision.decision_id:
                return _adopted(p, decision, key, body, "adopted")

    last_seq, last_key = stored[-1] if stored else (0, None)
    previous = sha256_hex(p.compliance.get(last_key)) if last_key else None
    link = ChainLink(family=family, sequence=last_seq + 1, previous_sha256=previous)
    payload = canonical_json(build_statement(inputs, link))
    body = canonical_json(p.signer.sign(payload))
    key = manifest_key(family, link.sequence)
    # The key first: verification looks an entry's key up by the id its signature names, so no
    # entry may be stored (and then survive a crash) without its public key beside it.
    publish_public_key(p)
    try:
        uri = p.compliance.put_once(key, body)
    except ConflictError as e:
        existing = p.compliance.get(key)
        if _decision_id(existing) == decision.decision_id:
            return _adopted(p, decision, key, existing, "adopted")
        raise TransientError(f"{key} was taken by another decision; the next attempt chains after it") from e
    sha = sha256_hex(body)
    item = _record_item(decision, link, key=key, uri=uri, sha=sha, key_id=p.signer.key_id)
    put = Put(state_pk(family), f"{link.sequence:08d}", item, if_absent=True)
    return IssuedManifest(family, link.sequence, key, uri, sha, "issued", [put])


def _decision_id(body: bytes) -> str | None:
    try:
        return str(decision_of(decode_envelope(body)).get("decision_id"))
    except ManifestError:
        return None


def public_key_key(key_id: str) -> str:
    """Store key of a signing public key (``keys/<key id>.json``), kept beside the manifests for auditors."""
    return f"keys/{key_id}.json"


def publish_public_key(p: Platform) -> None:
    """Store the signing key's public half once, beside the manifests.

    Write-once like them (Object Lock on AWS), so it is a record verification can trust years
    later: each entry is checked with the key its signature names, whichever key signs today."""
    key = p.signer.public_key()
    where = public_key_key(key.keyid)
    try:
        p.compliance.get(where)
    except NotFoundError:
        with contextlib.suppress(ConflictError):  # a concurrent issuer published it first: the same key
            p.compliance.put_once(where, canonical_json(public_key_to_dict(key)))


# --- find, show --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    """Where a model version's manifest is, and whether the state records it."""

    family: str
    sequence: int
    key: str
    uri: str
    sha256: str | None
    recorded: bool


def _family_of(p: Platform, model_version: str) -> str:
    model = p.state.get(MODELS_PK, model_version)
    if model is None or not model.get("family"):
        raise ManifestNotFoundError(f"no model version {model_version!r}")
    return str(model["family"])


def find_manifest(p: Platform, model_version: str, *, sequence: int | None = None) -> ManifestEntry:
    """The newest manifest of ``model_version`` (or its entry ``sequence``).

    A model version has one manifest per decision about it (approved, then overridden…).
    Entries the state does not record (an issue that crashed before its commit) are found in the store.
    """
    family = _family_of(p, model_version)
    mine = [
        (int(sk), item)
        for sk, item in p.state.query(state_pk(family))
        if item.get("model_version") == model_version and (sequence is None or int(sk) == sequence)
    ]
    if mine:
        seq, item = mine[-1]
        return ManifestEntry(family, seq, str(item["key"]), str(item["uri"]), str(item["sha256"]), True)
    recorded = {int(sk) for sk, _ in p.state.query(state_pk(family))}
    for key in reversed(p.compliance.list(family_prefix(family))):
        n = sequence_of(key)
        if n is None or n in recorded or (sequence is not None and n != sequence):
            continue
        try:
            if model_version_of(decode_envelope(p.compliance.get(key))) == model_version:
                return ManifestEntry(family, n, key, p.compliance.uri(key), None, False)
        except ManifestError:
            continue
    which = f" entry {sequence}" if sequence is not None else ""
    raise ManifestNotFoundError(f"no compliance manifest{which} for {model_version}")


def show(p: Platform, model_version: str, *, sequence: int | None = None) -> dict[str, Any]:
    """The decoded in-toto statement of ``model_version``'s newest manifest (signature not checked:
    that is :func:`verify`)."""
    entry = find_manifest(p, model_version, sequence=sequence)
    return decode_envelope(p.compliance.get(entry.key))


# --- verify ------------------------------------------------------------------------------------


def verify(
    p: Platform, model_version: str, *, sequence: int | None = None, public_key: PublicKeys | None = None
) -> VerificationReport:
    """Recompute and check everything the manifest of ``model_version`` states.

    Parameters
    ----------
    sequence:
        Verify that chain entry of the model version (one per decision about it) rather than its
        newest; :class:`ManifestNotFoundError` when that entry is about another version.
    public_key:
        The only keys to trust (a securesystemslib ``Key``, its JSON form, or a list of them, e.g.
        from :func:`~docllm.ports.signer.load_public_keys`). Default: each entry's signature is
        checked with the key its key id names in the compliance store (``keys/<keyid>.json``,
        write-once), or the platform signer's current key when that is the key named; an entry
        whose key id names neither is an ``unknown_key`` mismatch. So entries signed before a key
        rotation verify with the key that signed them.

    Every digest is recomputed from the stored bytes: documents by their object version, the
    dataset manifest, every tokenizer, shard and model file (files added under their prefixes
    since are named too); every envelope's signature is checked; the whole chain of the family is
    checked against the store and the state.
    """
    entry = find_manifest(p, model_version, sequence=sequence)
    trusted = TrustedKeys(p, as_keys(public_key) if public_key is not None else None)
    report = VerificationReport(
        ok=False,
        model_version=model_version,
        family=entry.family,
        manifest_key=entry.key,
        sequence=entry.sequence,
    )
    found: list[Mismatch] = []
    chain, checked_with = _check_family_chain(p, entry.family, trusted, found)
    report.key_id = checked_with.get(entry.key)
    body = chain.get(entry.key)
    if body is None:
        report.mismatches = found
        return report
    report.manifest_sha256 = sha256_hex(body)
    try:
        statement = decode_envelope(body)
    except ManifestError as e:
        found.append(Mismatch(kind="statement", subject=entry.key, detail=str(e)))
        report.mismatches = found
        return report
    problems = shape_problems(statement)
    found += [Mismatch(kind="statement", subject=entry.key, detail=problem) for problem in problems]
    if not problems:
        _check_artefacts(p, statement, found, report.checked)
    report.mismatches = found
    report.ok = not found
    return report


class TrustedKeys:
    """The public keys verification trusts, looked up by the key ids the envelopes name.

    Given keys are the only ones trusted. Otherwise a key id is looked up once in the compliance
    store (``keys/<keyid>.json``): a published key is trusted when its content hashes to its id
    (securesystemslib's default key id, which both signers use), so a file put under another
    key's name is not taken for it; an unpublished id that is the current signer's is trusted
    with the signer's key (an entry issued before keys were published).
    """

    def __init__(self, p: Platform, given: list[Key] | None) -> None:
        self._p = p
        self.given = given
        self._published: dict[str, Key | None] = {}

    def for_ids(self, key_ids: list[str]) -> list[Key]:
        """The trusted keys among ``key_ids`` (every given key when keys were given)."""
        if self.given is not None:
            return self.given
        return [k for k in (self._lookup(i) for i in key_ids) if k is not None]

    def _lookup(self, key_id: str) -> Key | None:
        if key_id not in self._published:
            self._published[key_id] = self._published_key(key_id) or self._current(key_id)
        return self._published[key_id]

    def _published_key(self, key_id: str) -> Key | None:
        try:
            raw = self._p.compliance.get(public_key_key(key_id))
        except (NotFoundError, PermanentError):  # PermanentError: an id that is no store key
            return None
        try:
            key = public_key_from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            return None
        return key if key.keyid == key_id == computed_key_id(key) else None

    def _current(self, key_id: str) -> Key | None:
        current = self._p.signer.public_key()
        return current if current.keyid == key_id else None


def _check_family_chain(
    p: Platform, family: str, trusted: TrustedKeys, found: list[Mismatch]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """Read every stored entry of the family, check each signature and the chain.

    Returns the entries' bytes by key, and the key id each entry's signature verified with.
    """
    bodies: dict[str, bytes] = {}
    checked_with: dict[str, str] = {}
    stored: list[StoredEntry] = []
    for key in p.compliance.list(family_prefix(family)):
        try:
            body = p.compliance.get(key)
        except NotFoundError:
            continue  # removed between list and get: the chain check names the gap
        bodies[key] = body
        link: ChainLink | None
        try:
            envelope = json.loads(body)
            link = chain_link_of(decode_envelope(body))
        except (ValueError, ManifestError):
            envelope, link = None, None
        mismatch = signature_mismatch(key, envelope, trusted, checked_with)
        if mismatch is not None:
            found.append(mismatch)
        stored.append(StoredEntry(key=key, sha256=sha256_hex(body), link=link))
    recorded = [
        RecordedEntry(sequence=int(sk), key=str(item.get("key")), sha256=str(item.get("sha256")))
        for sk, item in p.state.query(state_pk(family))
    ]
    found += check_chain(family, stored, recorded)
    return bodies, checked_with


def signature_mismatch(key: str, envelope: Any, trusted: TrustedKeys, checked_with: dict[str, str]) -> Mismatch | None:
    """What is wrong with the signature of the entry at ``key``, or None when it verifies."""
    key_ids = envelope_key_ids(envelope) if isinstance(envelope, dict) else []
    keys = trusted.for_ids(key_ids)
    if key_ids and not keys:
        return Mismatch(
            kind="unknown_key",
            subject=key,
            actual=", ".join(key_ids),
            detail="signed by a key with no trusted public key: none published at "
            f"{public_key_key(key_ids[0])} in the compliance store, and not the current signing key",
        )
    # DSSE signatures name their key; securesystemslib only tries a key on the signature naming it.
    for k in keys:
        if k.keyid in key_ids and verify_envelope(envelope, k):
            checked_with[key] = k.keyid
            return None
    return Mismatch(
        kind="signature",
        subject=key,
        actual=", ".join(key_ids) or None,
        detail="the envelope's signature does not verify with the trusted key "
        "(payload altered, or signed by another key)",
    )


def _check_artefacts(p: Platform, statement: dict[str, Any], found: list[Mismatch], checked: dict[str, int]) -> None:
    build = statement["predicate"]["buildDefinition"]
    prefixes = build.get("internalParameters", {}).get("artefacts", {})
    subjects = statement["subject"]
    for s in subjects:
        if _kind(s) == KIND_BEDROCK_MODEL:
            _check_bedrock_model(p, s, found, checked)
        else:
            check_digest(p, s, "model", found, checked)
    _check_unlisted(p, prefixes.get("export"), subjects, found)
    deps = build["resolvedDependencies"]
    documents: list[dict[str, Any]] = []
    dataset_manifest: bytes | None = None
    for d in deps:
        kind = (d.get("annotations") or {}).get("kind")
        if kind == KIND_DOCUMENT:
            documents.append(d)
            _check_document(p, d, found, checked)
        elif kind in (
            KIND_DATASET,
            KIND_TOKENIZER,
            KIND_SHARD,
            KIND_TEACHER,
            KIND_BASE_MODEL,
            KIND_INIT,
            KIND_CUSTOMIZATION_DATA,
        ):
            body = check_digest(p, d, kind, found, checked, keep=kind == KIND_DATASET)
            if kind == KIND_DATASET:
                dataset_manifest = body
    _check_unlisted(p, prefixes.get("tokenizer"), [d for d in deps if _kind(d) == KIND_TOKENIZER], found)
    _check_unlisted(p, prefixes.get("shards"), [d for d in deps if _kind(d) == KIND_SHARD], found)
    if dataset_manifest is not None:
        _check_dataset_documents(dataset_manifest, documents, found)
    byproducts = statement["predicate"].get("runDetails", {}).get("byproducts", [])
    for b in byproducts:
        if str(b.get("uri", "")).startswith("s3://"):
            check_digest(p, b, KIND_ADAPTER if _kind(b) == KIND_ADAPTER else "byproduct", found, checked)
    _check_unlisted(p, prefixes.get("adapter"), [b for b in byproducts if _kind(b) == KIND_ADAPTER], found)


def _check_bedrock_model(p: Platform, s: dict[str, Any], found: list[Mismatch], checked: dict[str, int]) -> None:
    """A Bedrock custom model's subject: its digest is its identity record's, and Bedrock, asked
    about the customization job, names the same custom model (when Bedrock can be asked: the local
    platform has none)."""
    uri = str(s.get("uri", ""))
    identity = (s.get("annotations") or {}).get("identity") or {}
    expected = (s.get("digest") or {}).get("sha256")
    checked["bedrock-custom-model"] = checked.get("bedrock-custom-model", 0) + 1
    actual = sha256_hex(canonical_json(identity))
    if actual != expected:
        found.append(
            Mismatch(kind="digest", subject=uri, expected=expected, actual=actual, detail="identity record changed")
        )
        return
    job = str(identity.get("customizationJob") or "")
    try:
        described = p.customizer.describe(job)
    except NotFoundError:
        found.append(Mismatch(kind="provider", subject=uri, detail=f"Amazon Bedrock has no customization job {job}"))
        return
    except PermanentError as e:
        if p.local:
            return  # no Bedrock on the local platform: the digests are all there is to check
        found.append(Mismatch(kind="provider", subject=uri, detail=f"Amazon Bedrock could not be asked: {e}"))
        return
    checked["bedrock-job"] = checked.get("bedrock-job", 0) + 1
    if described.custom_model_arn != identity.get("customModelArn"):
        found.append(
            Mismatch(
                kind="provider",
                subject=uri,
                expected=str(identity.get("customModelArn")),
                actual=described.custom_model_arn,
                detail=f"Bedrock's customization job {job} names another custom model",
            )
        )


def _kind(d: dict[str, Any]) -> Any:
    return (d.get("annotations") or {}).get("kind")


def check_digest(
    p: Platform,
    d: dict[str, Any],
    what: str,
    found: list[Mismatch],
    checked: dict[str, int],
    *,
    keep: bool = False,
) -> bytes | None:
    uri, expected = str(d.get("uri", "")), (d.get("digest") or {}).get("sha256")
    checked[what] = checked.get(what, 0) + 1
    try:
        bucket, key = split_uri(uri)
        if keep:
            body = retry_transient(lambda: p.objects.get(bucket, key))
            actual = sha256_hex(body)
        else:
            body, actual = None, hash_object(p, bucket, key)[0]
    except (NotFoundError, ValueError) as e:
        found.append(Mismatch(kind="missing", subject=uri, expected=expected, detail=f"{what}: {e}"))
        return None
    if actual != expected:
        found.append(Mismatch(kind="digest", subject=uri, expected=expected, actual=actual, detail=f"{what} changed"))
        return None
    return body


def _check_document(p: Platform, d: dict[str, Any], found: list[Mismatch], checked: dict[str, int]) -> None:
    uri, expected = str(d.get("uri", "")), (d.get("digest") or {}).get("sha256")
    version_id = (d.get("annotations") or {}).get("versionId")
    checked["document"] = checked.get("document", 0) + 1
    try:
        bucket, key = split_uri(uri.partition("?versionId=")[0])
        # By version id: a newer upload under the same key is a new document, not a changed one.
        actual = sha256_hex(retry_transient(lambda: p.objects.get(bucket, key, version_id=version_id)))
    except (NotFoundError, ValueError) as e:
        found.append(Mismatch(kind="missing", subject=uri, expected=expected, detail=f"input document: {e}"))
        return
    if actual != expected:
        found.append(
            Mismatch(kind="digest", subject=uri, expected=expected, actual=actual, detail="input document changed")
        )


def _check_unlisted(p: Platform, prefix_uri: str | None, listed: list[dict[str, Any]], found: list[Mismatch]) -> None:
    if not prefix_uri:
        return
    bucket, prefix = split_uri(prefix_uri if prefix_uri.endswith("/") else prefix_uri + "/")
    names = {str(d.get("uri")) for d in listed}
    for info in p.objects.list(bucket, prefix):
        uri = f"s3://{bucket}/{info.key}"
        if uri not in names:
            found.append(Mismatch(kind="unlisted", subject=uri, detail="a file the manifest does not name"))


def _check_dataset_documents(raw: bytes, documents: list[dict[str, Any]], found: list[Mismatch]) -> None:
    manifest = DatasetManifest.model_validate_json(raw)
    in_dataset = {d.doc_key: d.sha256 for d in manifest.documents}
    in_statement = {str(d.get("name")): (d.get("digest") or {}).get("sha256") for d in documents}
    for doc_key in sorted(in_dataset.keys() | in_statement.keys()):
        if in_dataset.get(doc_key) != in_statement.get(doc_key):
            found.append(
                Mismatch(
                    kind="dataset",
                    subject=doc_key,
                    expected=in_dataset.get(doc_key),
                    actual=in_statement.get(doc_key),
                    detail="the dataset manifest and the statement disagree on this document",
                )
            )
