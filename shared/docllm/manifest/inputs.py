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


class InitRef(BaseModel):
    """The weights a continued (``continue``) model started from: the champion its launcher named
    (the job context) and the weights file the job read (``result.json`` ``init``)."""

    model_version: str | None = Field(default=None, description="the champion continued from")
    uri: str = Field(description="s3:// prefix the weights were read from (the champion's export)")
    weights_file: str = Field(description="the weights file under ``uri``")
    weights_sha256: str = _sha256()

    @property
    def weights_uri(self) -> str:
        return f"{self.uri.rstrip('/')}/{self.weights_file}"


class LoraRef(BaseModel):
    """A LoRA model's own inputs and outputs (its training record and ``result.json``): the base it
    adapts, the adapter it made, its settings and the TF-IDF subset of the training sections."""

    base_model_uri: str = Field(description="s3:// prefix of the base's Hugging Face directory")
    base_model_version: str | None = Field(default=None, description="the base's model version, when ours")
    base_files: dict[str, str] = Field(description="file name -> sha256 of the base, as the job read it")
    adapter_uri: str = Field(description="s3:// prefix of the PEFT adapter (vLLM --lora-modules)")
    adapter_files: list[Artefact]
    settings: dict[str, Any] = Field(description="r, alpha, target modules, trainable parameters")
    subset: dict[str, Any] | None = Field(default=None, description="what the TF-IDF subset kept (summary)")
    subset_file: Artefact | None = Field(default=None, description="subset.json: every kept section, scored")

    def base_uri(self, name: str) -> str:
        return f"{self.base_model_uri.rstrip('/')}/{name}"


class BedrockRef(BaseModel):
    """An Amazon Bedrock custom model (``method: bedrock-customization``): what its customization job
    record, model record and ``data.json`` say, and the files of ours Bedrock read and wrote.

    Bedrock keeps the weights in AWS-managed storage and never releases them, so there is no weights
    file to name: the statement's subject is the custom model's identity record (:meth:`identity`),
    named by the sha256 of its canonical JSON."""

    custom_model_arn: str = Field(min_length=1)
    custom_model_name: str | None = None
    job_name: str = Field(min_length=1, description="the customization job (its name is the model's)")
    job_arn: str | None = None
    base_model_identifier: str = Field(min_length=1, description="as the family names it (id or ARN)")
    base_model_arn: str | None = Field(default=None, description="as Bedrock resolved it")
    customization_type: str
    hyperparameters: dict[str, str] = Field(description="what CreateModelCustomizationJob was sent")
    data_uri: str = Field(description="s3:// prefix of train.jsonl, validation.jsonl and data.json")
    data_files: list[Artefact] = Field(description="train.jsonl, validation.jsonl (when given), data.json")
    data_summary: dict[str, Any] = Field(description="data.json: counts, template, limits, what was dropped")
    output_uri: str = Field(description="s3:// prefix Bedrock wrote its metrics files to")
    output_files: list[Artefact] = Field(default_factory=list, description="Bedrock's metrics files")

    def identity(self) -> dict[str, Any]:
        """What names the custom model: the subject's annotations, whose canonical JSON it is the digest of."""
        return {
            "customModelArn": self.custom_model_arn,
            "customModelName": self.custom_model_name,
            "customizationJob": self.job_name,
            "customizationJobArn": self.job_arn,
            "baseModelIdentifier": self.base_model_identifier,
            "baseModelArn": self.base_model_arn,
            "customizationType": self.customization_type,
            "hyperParameters": dict(sorted(self.hyperparameters.items())),
            "trainingData": {a.name: a.sha256 for a in self.data_files},
        }


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
    tokenizer_uri: str | None = Field(description="None: a LoRA model, whose tokenizer is its base's")
    tokenizer_files: list[Artefact]
    shards_uri: str | None = Field(description="None: a LoRA model, trained on the dataset's text directly")
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
    init: InitRef | None = Field(default=None, description="continued models: the champion's weights it started from")
    training_reason: str | None = Field(
        default=None, description="why the run was continued or full (a continue family's launcher says)"
    )
    lora: LoraRef | None = Field(default=None, description="LoRA models: base, adapter, settings, subset")
    bedrock: BedrockRef | None = Field(
        default=None, description="Amazon Bedrock custom models: job, base model, data files; no weights"
    )

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())
