"""The signed manifest of a retriever (dual encoder) version: an in-toto Statement v1, SLSA Provenance v1.

Same envelope, signer and store as a model's manifest (docs/compliance.md), one statement per
approved retriever version, not chained (a retriever belongs to no model family):

``subject``
    the encoder's model files (``encoder.npz``, ``tokenizer.model``, ``card.json``) with their sha256;
``buildDefinition``
    ``buildType`` :data:`RETRIEVER_BUILD_TYPE`; ``externalParameters`` what was chosen (the encoder
    settings, the family that asked for it); ``internalParameters`` what the platform chose (the
    retriever, dataset and tokenizer versions, the artefact prefixes); ``resolvedDependencies`` the
    dataset (its ``manifest.json`` by digest when recorded) and every tokenizer file, plus the job's
    code and environment when the job recorded them;
``runDetails``
    the builder (the deployment), the job as invocation, and as byproducts ``validation.json`` by
    digest, the card, the validation figures and the gate's decision.

Pure: :func:`build_retriever_statement` turns :class:`RetrieverInputs` into a JSON-compatible dict;
the issue and the checks against the stores live in ``docllm.service_layer.retriever``.

>>> RETRIEVER_BUILD_TYPE
'urn:docllm:build-type:retriever:v1'
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from docllm.manifest.canonical import canonical_json
from docllm.manifest.exceptions import ManifestError
from docllm.manifest.inputs import Artefact, JobProvenance
from docllm.manifest.report import Mismatch
from docllm.manifest.statement import (
    KIND_DATASET,
    KIND_TOKENIZER,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    artefact_descriptor,
    code_descriptor,
    described,
    descriptor,
    environment_descriptor,
    json_safe,
    shape_problems,
)

#: What a docllm retriever build is (docs/compliance.md, "Retriever manifests"); a new shape is a new version.
RETRIEVER_BUILD_TYPE = "urn:docllm:build-type:retriever:v1"


class RetrieverInputs(BaseModel):
    """Everything a retriever's statement says, from the retriever stage's records."""

    version: str
    artifacts_uri: str = Field(description="s3:// prefix of the encoder's files")
    files: dict[str, str] = Field(description="sha256 of each model file, by name (the subjects)")
    settings: dict[str, Any] = Field(description="EncoderSettings the encoder was trained with")
    card: dict[str, Any] = Field(description="card.json: inputs, training figures")
    family: str | None = None
    dataset_version: str
    dataset_uri: str = Field(description="s3:// prefix of the dataset version")
    dataset_manifest: Artefact | None = Field(default=None, description="its manifest.json, when recorded")
    tokenizer_version: str
    tokenizer_uri: str | None = None
    tokenizer_files: list[Artefact] = Field(default_factory=list)
    job_name: str
    started_on: str | None = None
    provenance: dict[str, JobProvenance] = Field(default_factory=dict, description="code/environment by role")
    validation: Artefact | None = Field(default=None, description="validation.json, the gate's figures")
    status: str
    reason: str
    metrics: dict[str, float] = Field(default_factory=dict)
    by_type: dict[str, dict[str, float]] = Field(default_factory=dict)
    builder_id: str


def _subject_uri(prefix: str, name: str) -> str:
    return prefix + name if prefix.endswith("/") else f"{prefix}/{name}"


def build_retriever_statement(inputs: RetrieverInputs) -> dict[str, Any]:
    """The in-toto statement of one retriever version.

    Raises
    ------
    ManifestError
        No model file to attest, or a value JSON cannot hold.
    """
    if not inputs.files:
        raise ManifestError(f"retriever {inputs.version}: no model file to attest")
    subjects = [
        descriptor(name=name, uri=_subject_uri(inputs.artifacts_uri, name), digest={"sha256": sha})
        for name, sha in sorted(inputs.files.items())
    ]
    dataset = (
        artefact_descriptor(inputs.dataset_manifest, KIND_DATASET, version=inputs.dataset_version)
        if inputs.dataset_manifest is not None
        else descriptor(
            name=f"dataset:{inputs.dataset_version}",
            uri=inputs.dataset_uri,
            annotations={"kind": KIND_DATASET, "version": inputs.dataset_version, "digest": "none: not recorded"},
        )
    )
    deps = [
        dataset,
        *(artefact_descriptor(a, KIND_TOKENIZER, version=inputs.tokenizer_version) for a in inputs.tokenizer_files),
    ]
    for role, prov in sorted(inputs.provenance.items()):
        deps += [d for d in (code_descriptor(role, prov), environment_descriptor(role, prov)) if d is not None]

    byproducts: list[dict[str, Any]] = []
    if inputs.validation is not None:
        v = inputs.validation
        byproducts.append(
            descriptor(name=v.name, uri=v.uri, digest={"sha256": v.sha256}, media_type="application/json")
        )
    byproducts += [
        described({"kind": "card", **json_safe(inputs.card)}, name="card"),
        described(
            {"kind": "metrics", **json_safe(inputs.metrics), "byType": json_safe(inputs.by_type)}, name="metrics"
        ),
        described({"kind": "decision", "status": inputs.status, "reason": inputs.reason}, name="decision"),
    ]
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": RETRIEVER_BUILD_TYPE,
                "externalParameters": json_safe({"family": inputs.family, "settings": inputs.settings}),
                "internalParameters": {
                    "retrieverVersion": inputs.version,
                    "datasetVersion": inputs.dataset_version,
                    "tokenizerVersion": inputs.tokenizer_version,
                    "artefacts": {
                        "encoder": inputs.artifacts_uri,
                        "dataset": inputs.dataset_uri,
                        **({"tokenizer": inputs.tokenizer_uri} if inputs.tokenizer_uri else {}),
                    },
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": inputs.builder_id},
                "metadata": {
                    k: v for k, v in {"invocationId": inputs.job_name, "startedOn": inputs.started_on}.items() if v
                },
                "byproducts": byproducts,
            },
        },
    }
    canonical_json(statement)  # refuse now, not at signing time, anything JSON cannot hold
    return statement


# --- reading ---------------------------------------------------------------------------------


def retriever_problems(statement: Any, version: str) -> list[str]:
    """What keeps ``statement`` from being the retriever statement of ``version`` we issue (empty: none).

    >>> retriever_problems({"_type": STATEMENT_TYPE}, "enc-1")[:1]
    ['subject: missing or empty']
    """
    problems = shape_problems(statement, build_type=RETRIEVER_BUILD_TYPE)
    if problems:
        return problems
    internal = statement["predicate"]["buildDefinition"].get("internalParameters") or {}
    if internal.get("retrieverVersion") != version:
        problems.append(f"predicate.buildDefinition.internalParameters.retrieverVersion: not {version}")
    return problems


def _sha256(d: dict[str, Any]) -> str | None:
    digest = d.get("digest")
    return str(digest["sha256"]) if isinstance(digest, dict) and digest.get("sha256") else None


def subject_digests(statement: dict[str, Any]) -> dict[str, str]:
    """The sha256 of each subject, by name (what the index may load)."""
    return {str(s["name"]): sha for s in statement.get("subject", []) if isinstance(s, dict) and (sha := _sha256(s))}


class RetrieverVerification(BaseModel):
    """What ``docllm retriever verify`` prints (``--json``: this model)."""

    ok: bool
    retriever_version: str
    manifest_key: str
    manifest_uri: str | None = None
    manifest_sha256: str | None = None
    key_id: str | None = Field(
        default=None, description="the key id the manifest's signature was checked with (None: no trusted key)"
    )
    checked: dict[str, int] = Field(default_factory=dict, description="what was recomputed: kind -> count")
    mismatches: list[Mismatch] = Field(default_factory=list)
