"""The manifest's content: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

Standard tools read it as what it is: the *subjects* are the model files of the Hugging Face
export with their sha256 digests; the predicate says how they were built, in SLSA v1's shape:

``buildDefinition``
    ``buildType`` :data:`BUILD_TYPE` (documented in docs/compliance.md);
    ``externalParameters`` what a user chose: the family, its definition, the training and model
    configuration; ``internalParameters`` what the platform chose: dataset and tokenizer versions,
    the split rule, the artefact prefixes and the chain position; ``resolvedDependencies`` every
    input with its digest: each source document pinned to its object version, the dataset
    manifest, every tokenizer file, every shard file, the code (git commit) and the environment
    (image digest, or the local lock hash); for a distilled model, the teacher's weights file
    with the teacher's model version and manifest digest.
``runDetails``
    the builder (the deployment), the training job as invocation with its start and end, and as
    byproducts the evaluation report, the job names, the metrics and the gate's decision.

Pure: :func:`build_statement` turns :class:`ManifestInputs` into a JSON-compatible dict.

>>> STATEMENT_TYPE, PREDICATE_TYPE
('https://in-toto.io/Statement/v1', 'https://slsa.dev/provenance/v1')
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from docllm.manifest.canonical import canonical_json, sha256_hex
from docllm.manifest.chain import ChainLink
from docllm.manifest.exceptions import ManifestError
from docllm.manifest.inputs import (
    Artefact,
    BedrockRef,
    InitRef,
    JobProvenance,
    LoraRef,
    ManifestInputs,
    TeacherRef,
)

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
#: What a docllm model build is (see docs/compliance.md, "Build type"); a new shape is a new version.
BUILD_TYPE = "urn:docllm:build-type:model:v1"
STATEMENT_FIELDS = frozenset({"_type", "subject", "predicateType", "predicate"})
#: Fields of an in-toto ResourceDescriptor v1.
DESCRIPTOR_FIELDS = frozenset({"name", "uri", "digest", "content", "downloadLocation", "mediaType", "annotations"})

#: ``annotations.kind`` of each resolved dependency, which verification dispatches on.
KIND_DOCUMENT = "document"
KIND_DATASET = "dataset-manifest"
KIND_TOKENIZER = "tokenizer"
KIND_SHARD = "shard"
KIND_CODE = "code"
KIND_ENVIRONMENT = "environment"
KIND_TEACHER = "teacher-model"
KIND_INIT = "initial-weights"
KIND_BASE_MODEL = "base-model"
KIND_ADAPTER = "lora-adapter"
KIND_BEDROCK_MODEL = "bedrock-custom-model"
KIND_BEDROCK_BASE = "bedrock-base-model"
KIND_CUSTOMIZATION_DATA = "customization-data"
#: What a Bedrock custom model's statement says in place of weights (internalParameters.bedrock.weights).
BEDROCK_NO_WEIGHTS = (
    "none: Amazon Bedrock keeps a custom model's weights in AWS-managed storage and never releases them, so "
    "no weights file is a subject; the subject is the custom model's identity record (its ARN, customization "
    "job, base model, hyperparameters and the sha256 of the training data), and its digest is the sha256 of "
    "that record's canonical JSON, not of weights"
)


def descriptor(
    *,
    name: str | None = None,
    uri: str | None = None,
    digest: dict[str, str] | None = None,
    annotations: dict[str, Any] | None = None,
    media_type: str | None = None,
) -> dict[str, Any]:
    """An in-toto ResourceDescriptor with the unset fields left out (the spec wants them absent)."""
    fields = {"name": name, "uri": uri, "digest": digest, "annotations": annotations, "mediaType": media_type}
    return {k: v for k, v in fields.items() if v is not None}


def described(value: dict[str, Any], *, name: str) -> dict[str, Any]:
    # A descriptor needs a uri, digest or content: a record without one is named by its own digest.
    return descriptor(name=name, digest={"sha256": sha256_hex(canonical_json(value))}, annotations=value)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float written as text (``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``): a diverged run's loss is a fact to record, and JSON has no number for it."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def artefact_descriptor(a: Artefact, kind: str, **annotations: Any) -> dict[str, Any]:
    return descriptor(
        name=a.name, uri=a.uri, digest={"sha256": a.sha256}, annotations={"kind": kind, "size": a.size, **annotations}
    )


def code_descriptor(role: str, prov: JobProvenance) -> dict[str, Any]:
    code = prov.code or {}
    commit = code.get("commit")
    if not commit or commit == "unknown":
        # No commit to pin: say so plainly (the record names itself by its own digest).
        return described({"kind": KIND_CODE, "role": role, **json_safe(code)}, name=f"code:{role}")
    repository = code.get("repository") or "unknown"
    uri = f"git+{repository}@{commit}" if repository != "unknown" else None
    return descriptor(
        name=f"code:{role}",
        uri=uri,
        digest={"gitCommit": str(commit)},
        annotations={"kind": KIND_CODE, "role": role, "repository": repository, "dirty": code.get("dirty")},
    )


def environment_descriptor(role: str, prov: JobProvenance) -> dict[str, Any] | None:
    env = prov.environment
    if not env:
        return None
    annotations = {"kind": KIND_ENVIRONMENT, "role": role, **{k: v for k, v in env.items() if k != "image_digest"}}
    image = env.get("image_digest")
    if image:
        algo, _, hexdigest = str(image).partition(":")
        return descriptor(name=f"image:{role}", digest={algo: hexdigest}, annotations=annotations)
    return descriptor(
        name=f"environment:{role}", digest={"sha256": str(env.get("lock_sha256"))}, annotations=annotations
    )


def _teacher(t: TeacherRef) -> dict[str, Any]:
    # The weights file the job read, by digest; the teacher's own manifest (its inputs, its chain)
    # by version and digest, so a reader can follow the distillation back to the teacher's data.
    annotations = {"kind": KIND_TEACHER, "modelVersion": t.model_version, "manifestSha256": t.manifest_sha256}
    return descriptor(
        name=f"teacher:{t.model_version or 'unversioned'}",
        uri=t.weights_uri,
        digest={"sha256": t.weights_sha256},
        annotations={k: v for k, v in annotations.items() if v is not None},
    )


def _init(i: InitRef) -> dict[str, Any]:
    # The champion's weights a continued model started from, by digest, and the champion's version
    # (whose own manifest lists the data those weights were trained on).
    annotations = {"kind": KIND_INIT, "modelVersion": i.model_version}
    return descriptor(
        name=f"init:{i.model_version or 'unversioned'}",
        uri=i.weights_uri,
        digest={"sha256": i.weights_sha256},
        annotations={k: v for k, v in annotations.items() if v is not None},
    )


def _base_files(lora: LoraRef) -> list[dict[str, Any]]:
    # The base a LoRA model adapts, file by file as the job read it (a regulated user's approved base).
    annotations = {"kind": KIND_BASE_MODEL, "modelVersion": lora.base_model_version}
    return [
        descriptor(
            name=f"base:{name}",
            uri=lora.base_uri(name),
            digest={"sha256": sha},
            annotations={k: v for k, v in annotations.items() if v is not None},
        )
        for name, sha in sorted(lora.base_files.items())
    ]


def _lora_byproducts(lora: LoraRef) -> list[dict[str, Any]]:
    # The adapter (what vLLM serves with --lora-modules) and the subset kept: outputs of the build,
    # by digest, beside the merged export that is the subject.
    out = [
        descriptor(name=f"adapter/{a.name}", uri=a.uri, digest={"sha256": a.sha256}, annotations={"kind": KIND_ADAPTER})
        for a in lora.adapter_files
    ]
    if lora.subset_file is not None:
        f = lora.subset_file
        out.append(
            descriptor(name="lora-subset", uri=f.uri, digest={"sha256": f.sha256}, media_type="application/json")
        )
    out.append(described({"kind": "lora", **json_safe(lora.settings), "subset": json_safe(lora.subset)}, name="lora"))
    return out


def bedrock_subject(b: BedrockRef) -> dict[str, Any]:
    """The subject of a Bedrock custom model: its identity record, named by that record's digest."""
    identity = json_safe(b.identity())
    return descriptor(
        name=b.custom_model_name or b.custom_model_arn,
        uri=b.custom_model_arn,
        digest={"sha256": sha256_hex(canonical_json(identity))},
        annotations={"kind": KIND_BEDROCK_MODEL, "identity": identity},
    )


def _bedrock_inputs(b: BedrockRef) -> list[dict[str, Any]]:
    # The provider's base model has no digest anyone can check (it is Bedrock's); the data files are
    # ours, by digest, as Bedrock read them (data.json recorded each file's sha256 when it was written).
    annotations = {"kind": KIND_BEDROCK_BASE, "identifier": b.base_model_identifier, "digest": "none: Bedrock's"}
    base = descriptor(
        name=f"bedrock-base:{b.base_model_identifier}",
        uri=b.base_model_arn or b.base_model_identifier,
        annotations=annotations,
    )
    return [base, *(artefact_descriptor(a, KIND_CUSTOMIZATION_DATA) for a in b.data_files)]


def _bedrock_outputs(b: BedrockRef) -> list[dict[str, Any]]:
    # Bedrock's own metrics files (the evaluation's source), by digest.
    return [
        descriptor(name=f"bedrock-output/{a.name}", uri=a.uri, digest={"sha256": a.sha256}, media_type="text/csv")
        for a in b.output_files
    ]


def build_statement(inputs: ManifestInputs, link: ChainLink) -> dict[str, Any]:
    """The in-toto statement of a model version at chain position ``link``.

    Raises
    ------
    ManifestError
        When the model export holds no file (a statement needs a subject).
    """
    if inputs.bedrock is not None:
        subjects = [bedrock_subject(inputs.bedrock)]
    elif not inputs.model_files:
        raise ManifestError(f"model {inputs.model_version}: no file under {inputs.export_uri}")
    else:
        subjects = [descriptor(name=a.name, uri=a.uri, digest={"sha256": a.sha256}) for a in inputs.model_files]
    deps: list[dict[str, Any]] = [
        descriptor(
            name=d.doc_key,
            uri=d.uri,
            digest={"sha256": d.sha256},
            annotations={"kind": KIND_DOCUMENT, "split": d.split, "service": d.service, "versionId": d.version_id},
        )
        for d in inputs.documents
    ]
    deps.append(artefact_descriptor(inputs.dataset_manifest, KIND_DATASET, version=inputs.dataset_version))
    deps += [artefact_descriptor(a, KIND_TOKENIZER, version=inputs.tokenizer_version) for a in inputs.tokenizer_files]
    deps += [artefact_descriptor(a, KIND_SHARD) for a in inputs.shard_files]
    if inputs.teacher is not None:
        deps.append(_teacher(inputs.teacher))
    if inputs.init is not None:
        deps.append(_init(inputs.init))
    if inputs.lora is not None:
        deps += _base_files(inputs.lora)
    if inputs.bedrock is not None:
        deps += _bedrock_inputs(inputs.bedrock)
    for role, prov in sorted(inputs.provenance.items()):
        deps += [d for d in (code_descriptor(role, prov), environment_descriptor(role, prov)) if d is not None]

    decision = inputs.decision
    byproducts: list[dict[str, Any]] = []
    if inputs.evaluation is not None:
        ev = inputs.evaluation
        byproducts.append(
            descriptor(
                name="evaluation-report",
                uri=ev.report_uri,
                digest={"sha256": ev.report_sha256},
                media_type="application/json",
                annotations={"evaluationId": ev.evaluation_id},
            )
        )
        if ev.html_uri and ev.html_sha256:
            byproducts.append(
                descriptor(name="evaluation-report-html", uri=ev.html_uri, digest={"sha256": ev.html_sha256})
            )
    if inputs.lora is not None:
        byproducts += _lora_byproducts(inputs.lora)
    if inputs.bedrock is not None:
        byproducts += _bedrock_outputs(inputs.bedrock)
    byproducts.append(described({"kind": "jobs", **inputs.jobs}, name="jobs"))
    byproducts.append(described({"kind": "metrics", **json_safe(inputs.metrics)}, name="metrics"))
    byproducts.append(
        described({"kind": "decision", **decision.model_dump(mode="json", exclude_none=True)}, name="decision")
    )
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": json_safe(
                    {
                        "family": inputs.family,
                        "familyDefinition": inputs.family_definition,
                        "trainConfig": inputs.train_config,
                        "modelConfig": inputs.model_config_,
                    }
                ),
                "internalParameters": {
                    "modelVersion": inputs.model_version,
                    "datasetVersion": inputs.dataset_version,
                    "tokenizerVersion": inputs.tokenizer_version,
                    "splitRule": inputs.split_rule,
                    **({"trainingReason": inputs.training_reason} if inputs.training_reason else {}),
                    **({"bedrock": _bedrock_parameters(inputs.bedrock)} if inputs.bedrock else {}),
                    "artefacts": {
                        # A Bedrock custom model has no export prefix to list: its ARN is the subject.
                        **({"export": inputs.export_uri} if inputs.bedrock is None else {}),
                        **(_bedrock_artefacts(inputs.bedrock) if inputs.bedrock else {}),
                        **({"tokenizer": inputs.tokenizer_uri} if inputs.tokenizer_uri else {}),
                        **({"shards": inputs.shards_uri} if inputs.shards_uri else {}),
                        **(
                            {"adapter": inputs.lora.adapter_uri, "base": inputs.lora.base_model_uri}
                            if inputs.lora
                            else {}
                        ),
                    },
                    "chain": link.model_dump(mode="json"),
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": inputs.builder_id},
                "metadata": {
                    k: v
                    for k, v in {
                        "invocationId": inputs.jobs.get("train"),
                        "startedOn": inputs.started_on,
                        "finishedOn": inputs.finished_on,
                    }.items()
                    if v is not None
                },
                "byproducts": byproducts,
            },
        },
    }
    canonical_json(statement)  # refuse now, not at signing time, anything JSON cannot hold
    return statement


def _bedrock_artefacts(b: BedrockRef) -> dict[str, str]:
    return {"customizationData": b.data_uri, "customizationOutput": b.output_uri}


def _bedrock_parameters(b: BedrockRef) -> dict[str, Any]:
    return {
        "customModelArn": b.custom_model_arn,
        "customizationJob": b.job_name,
        "customizationJobArn": b.job_arn,
        "baseModelIdentifier": b.base_model_identifier,
        "baseModelArn": b.base_model_arn,
        "customizationType": b.customization_type,
        "hyperParameters": dict(sorted(b.hyperparameters.items())),
        "data": json_safe(b.data_summary),
        "weights": BEDROCK_NO_WEIGHTS,
    }


# --- reading ---------------------------------------------------------------------------------


def shape_problems(statement: Any, *, build_type: str = BUILD_TYPE) -> list[str]:
    """What keeps ``statement`` from being an in-toto Statement v1 with our predicate for ``build_type``
    (a model's by default; a retriever's: :mod:`docllm.manifest.retriever`) (empty: none).

    >>> shape_problems({"_type": STATEMENT_TYPE})[:1]
    ['subject: missing or empty']
    """
    if not isinstance(statement, dict):
        return ["not a JSON object"]
    problems: list[str] = []
    if statement.get("_type") != STATEMENT_TYPE:
        problems.append(f"_type: not {STATEMENT_TYPE}")
    extra = set(statement) - STATEMENT_FIELDS
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        problems.append("subject: missing or empty")
    else:
        for i, s in enumerate(subjects):
            problems += [f"subject[{i}]: {p}" for p in _descriptor_problems(s, digest_required=True)]
    if statement.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"predicateType: not {PREDICATE_TYPE}")
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        problems.append("predicate: missing")
    else:
        build = predicate.get("buildDefinition")
        if not isinstance(build, dict) or build.get("buildType") != build_type:
            problems.append(f"predicate.buildDefinition.buildType: not {build_type}")
        elif not isinstance(build.get("resolvedDependencies"), list):
            problems.append("predicate.buildDefinition.resolvedDependencies: missing")
        else:
            for i, d in enumerate(build["resolvedDependencies"]):
                problems += [f"resolvedDependencies[{i}]: {p}" for p in _descriptor_problems(d)]
        run = predicate.get("runDetails")
        if not isinstance(run, dict) or not isinstance(run.get("builder"), dict) or "id" not in run["builder"]:
            problems.append("predicate.runDetails.builder.id: missing")
    if extra:
        problems.append(f"unknown fields {sorted(extra)}")
    return problems


def _descriptor_problems(d: Any, *, digest_required: bool = False) -> list[str]:
    if not isinstance(d, dict):
        return ["not an object"]
    problems = []
    if set(d) - DESCRIPTOR_FIELDS:
        problems.append(f"unknown fields {sorted(set(d) - DESCRIPTOR_FIELDS)}")
    if not ({"uri", "digest", "content"} & set(d)):
        problems.append("needs one of uri, digest, content")
    digest = d.get("digest")
    if digest_required and not digest:
        problems.append("a subject needs a digest")
    if digest is not None and (
        not isinstance(digest, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in digest.items())
    ):
        problems.append("digest: not a map of algorithm to hex")
    return problems


def chain_link_of(statement: dict[str, Any]) -> ChainLink:
    """The chain position a statement declares."""
    try:
        raw = statement["predicate"]["buildDefinition"]["internalParameters"]["chain"]
        return ChainLink.model_validate(raw)
    except (KeyError, TypeError, ValidationError) as e:
        raise ManifestError(f"the statement declares no chain position: {e}") from e


def decision_of(statement: dict[str, Any]) -> dict[str, Any]:
    """The decision byproduct's record (``decision_id``, ``status``, ``decided_by``…)."""
    for b in statement.get("predicate", {}).get("runDetails", {}).get("byproducts", []):
        if isinstance(b, dict) and b.get("name") == "decision":
            return dict(b.get("annotations") or {})
    raise ManifestError("the statement records no decision")


def model_version_of(statement: dict[str, Any]) -> str:
    try:
        return str(statement["predicate"]["buildDefinition"]["internalParameters"]["modelVersion"])
    except (KeyError, TypeError) as e:
        raise ManifestError("the statement names no model version") from e
