"""What a compliance manifest is assembled from: the records the stages already keep.

:class:`ManifestInputs` is filled by ``service_layer.manifest.gather`` from state records and
stored artefacts (never retyped by hand) and turned into an in-toto statement by
:func:`docllm.manifest.statement.build_statement`. Pure data: no I/O here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _sha256() -> Any:
    return Field(pattern=r"^[0-9a-f]{64}$", description="lowercase hex sha256 of the stored bytes")


class DecisionRecord(BaseModel):
    """The gate's decision on a model version (or a person's override), as the gate records it."""

    decision_id: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    family: str = Field(min_length=1)
    status: Literal["Approved", "Rejected"]
    decided_by: str = Field(description="'gate' for the rules' decision, else the reviewer's identity")
    override: bool = Field(default=False, description="a person's decision rather than the rules'")
    reasons: list[str] = Field(default_factory=list, description="every rule's outcome, or the reviewer's reason")
    at: str = Field(description="RFC 3339 time of the decision")
    evaluation_id: str | None = Field(
        default=None, description="the evaluation decided on; None: the model version's newest evaluation"
    )


class Artefact(BaseModel):
    """One stored file and its digest."""

    name: str = Field(description="path relative to its artefact's prefix (``model.safetensors``)")
    uri: str = Field(description="``s3://bucket/key``")
    sha256: str = _sha256()
    size: int = Field(ge=0)


class InputDocument(BaseModel):
    """One source document of the dataset version, pinned to the object version that was read."""

    doc_key: str
    bucket: str
    version_id: str | None = Field(description="the raw object's version id; None in datasets built before it was kept")
    sha256: str = _sha256()
    split: str
    service: str

    @property
    def uri(self) -> str:
        base = f"s3://{self.bucket}/{self.doc_key}"
        return f"{base}?versionId={self.version_id}" if self.version_id else base


class JobProvenance(BaseModel):
    """Code and environment a job ran with (its ``result.json`` ``provenance``), or the issuer's own."""

    code: dict[str, Any] | None = Field(default=None, description="provenance.code_identity()")
    environment: dict[str, Any] | None = Field(default=None, description="provenance.environment_identity()")


class EvaluationRef(BaseModel):
    """The evaluation the decision was made on (the evaluate stage's state record)."""

    evaluation_id: str
    report_uri: str
    report_sha256: str = _sha256()
    html_uri: str | None = None
    html_sha256: str | None = None
    job: str | None = None


class TeacherRef(BaseModel):
    """The teacher of a distilled model, as its training job recorded it (``result.json`` ``teacher``)."""

    model_version: str | None = Field(default=None, description="the teacher's model version")
    uri: str = Field(description="s3:// prefix the teacher was read from (export or checkpoint directory)")
    weights_file: str = Field(description="the weights file under ``uri``")
    weights_sha256: str = _sha256()
    manifest_sha256: str | None = Field(default=None, description="sha256 of the teacher's own manifest")

    @property
    def weights_uri(self) -> str:
        return f"{self.uri.rstrip('/')}/{self.weights_file}"


class ManifestInputs(BaseModel):
    """Everything a manifest states, gathered from the records of the stages."""

    model_version: str
    family: str
    family_definition: dict[str, Any] | None = Field(description="the family as families.yaml defines it")
    train_config: dict[str, Any] = Field(description="the training job's TrainConfig (its result.json)")
    model_config_: dict[str, Any] = Field(alias="model_config", description="the model's config (its result.json)")
    dataset_version: str
    tokenizer_version: str
    split_rule: dict[str, Any]
    export_uri: str = Field(description="prefix of the Hugging Face export: every file under it is a subject")
    model_files: list[Artefact]
    dataset_manifest: Artefact
    documents: list[InputDocument]
    tokenizer_uri: str
    tokenizer_files: list[Artefact]
    shards_uri: str
    shard_files: list[Artefact]
    jobs: dict[str, str | None] = Field(description="stage -> job name: tokenizer, shards, train, evaluate")
    provenance: dict[str, JobProvenance] = Field(description="train, evaluate (when recorded), and issuer")
    started_on: str | None = Field(default=None, description="the training job's launch")
    finished_on: str | None = Field(default=None, description="the training job's completion")
    metrics: dict[str, dict[str, Any]] = Field(description="training and evaluation metrics")
    evaluation: EvaluationRef | None = None
    decision: DecisionRecord
    builder_id: str = Field(description="who issued it: the deployment (backend and stage)")
    teacher: TeacherRef | None = Field(default=None, description="distilled models: the teacher it learnt from")

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())
