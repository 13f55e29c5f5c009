"""A Bedrock custom model goes through evaluation → gate → registry → compliance manifest honestly.

Bedrock on botocore's Stubber (every request checked against the service model, as in
test_bedrock_customization_stage.py), the artifact and raw buckets on moto's S3 (the object store
is the S3 adapter, as on AWS), state, registry, compliance store and bus the local platform's. The
test writes Bedrock's metrics files where Bedrock writes them, then drives the real stage handlers:
the customize stage completes the job, the evaluate stage reports Bedrock's own metrics (and what it
cannot measure), the gate applies the s3-bedrock rules of gates.yaml, registers the model and
decides, and the compliance manifest names the custom model, its job, base model and the JSONL
Bedrock read by digest, and verifies (re-hashing the data); the deploy stage refuses it, saying why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from docllm.adapters.aws.bedrock_customization import BedrockCustomizer
from docllm.adapters.aws.s3 import S3ObjectStore
from docllm.adapters.local.bus import LoggedEvent
from docllm.bootstrap import Platform
from docllm.customize.evaluation import NOT_MEASURED
from docllm.dataset.versions import DATASETS_PK, DatasetDocument, DatasetManifest, DatasetStats, summarize
from docllm.records import JOBS_PK
from docllm.service_layer import customize, deploy, evaluate, gate, train
from docllm.service_layer import manifest as manifests
from docllm.service_layer.deploy import NotDeployableError
from docllm.service_layer.evaluate import EVALUATIONS_PK
from docllm.service_layer.jobs import MODELS_PK
from docllm.settings import Settings
from tests.conftest import REPO
from tests.integration.aws.conftest import REGION
from tests.integration.aws.test_bedrock_customization_stage import (
    ACCOUNT,
    DATASET,
    FAMILY,
    ROLE,
    described,
    document,
    state_change,
)

BASE_MODEL = "amazon.titan-text-lite-v1:0:4k"
DOCS = 20
OUTPUT_DIR = "model-customization-job-{job_id}/"
TRAINING_CSV = "training_artifacts/step_wise_training_metrics.csv"
VALIDATION_CSV = "validation_artifacts/post_fine_tuning_validation/validation_metrics.csv"


@dataclass
class World:
    p: Platform
    stub: Stubber
    s3: Any  # the moto S3 client

    @property
    def art(self) -> str:
        return self.p.settings.artifact_bucket


def job_arn(job_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-customization-job/{BASE_MODEL}/{job_id}"


def model_arn(job_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/{BASE_MODEL}/m{job_id}"


def seed_documents_and_dataset(p: Platform) -> None:
    """The raw documents (versioned), the dataset manifest naming them, and its split files."""
    docs = []
    for i in range(DOCS + 3):
        key, body = f"s3/widget{i}.md", document(i).encode()
        info = p.objects.put(p.settings.raw_bucket, key, body)
        docs.append(
            DatasetDocument(
                doc_key=key,
                sha256=hashlib.sha256(body).hexdigest(),
                version_id=info.version_id,
                service="s3",
                split="train" if i < DOCS else "validation",
                chunk_ids=[f"w{i}"],
                token_estimate=60,
            )
        )
    created = "2025-01-01T00:00:00.000+00:00"
    ds = DatasetManifest(version=DATASET, created_at=created, services=["s3"], documents=docs, stats=DatasetStats())
    art = p.settings.artifact_bucket
    key = f"datasets/{DATASET}/manifest.json"
    p.objects.put(art, key, ds.model_dump_json(indent=1).encode())
    p.state.put(DATASETS_PK, DATASET, summarize(ds, f"s3://{art}/{key}").model_dump(mode="json"))
    for split, rng in (("train", range(DOCS)), ("validation", range(DOCS, DOCS + 3))):
        lines = [{"chunk_id": f"w{i}", "doc_key": f"s3/widget{i}.md", "text": document(i)} for i in rng]
        p.objects.put(art, f"datasets/{DATASET}/{split}.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode())


@pytest.fixture
def world(tmp_path: Path, aws: None) -> Iterator[World]:
    p = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path)}),
        template=REPO / "template.yaml",
    )
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (p.settings.raw_bucket, p.settings.artifact_bucket):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    p.__dict__["objects"] = S3ObjectStore(s3)  # the cached ports, replaced before first use
    bedrock = boto3.client("bedrock", region_name=REGION)
    with Stubber(bedrock) as stub:
        p.__dict__["customizer"] = BedrockCustomizer(role_arn=ROLE, client=bedrock)
        seed_documents_and_dataset(p)
        yield World(p, stub, s3)
        stub.assert_no_pending_responses()


def csv_body(loss_column: str, rows: list[tuple[int, int, float]]) -> bytes:
    lines = [f"step_number,epoch_number,{loss_column},perplexity"]
    lines += [f"{step},{epoch},{loss},{2.718281828459045**loss:.6f}" for step, epoch, loss in rows]
    return ("\n".join(lines) + "\n").encode()


def complete_job(
    w: World,
    request_id: str,
    job_id: str,
    *,
    train_loss: float | None,
    val_loss: float | None,
    files: bool = True,
) -> str:
    """Launch the family's job (stubbed CreateModelCustomizationJob), write Bedrock's metrics files as
    Bedrock does, and complete the job through the customize stage; the model version."""
    w.stub.add_response("create_model_customization_job", {"jobArn": job_arn(job_id)}, expected_params=None)
    name = str(train._launch(w.p, FAMILY, DATASET, "", request_id)["job"])
    out = f"customizations/{FAMILY}/{name}/output/{OUTPUT_DIR.format(job_id=job_id)}"
    if files:
        curve = [(s, s // 5, round(3.0 - 0.1 * s, 4)) for s in range(10)]
        if train_loss is not None:
            curve[-1] = (9, 1, train_loss)
        w.p.objects.put(w.art, out + TRAINING_CSV, csv_body("training_loss", curve))
        if val_loss is not None:
            w.p.objects.put(w.art, out + VALIDATION_CSV, csv_body("validation_loss", [(4, 0, 2.0), (9, 1, val_loss)]))
    extra: dict[str, Any] = {"jobArn": job_arn(job_id), "outputModelArn": model_arn(job_id)}
    if train_loss is not None:
        extra["trainingMetrics"] = {"trainingLoss": train_loss}
    if val_loss is not None:
        extra["validationMetrics"] = [{"validationLoss": val_loss}]
    w.stub.add_response("get_model_customization_job", described("Completed", name, **extra), {"jobIdentifier": name})
    assert customize.handle_customization_event(w.p, state_change(name, "Completed"))["outcome"] == "completed"
    return name


def events(p: Platform, detail_type: str) -> list[LoggedEvent]:
    return [e for e in p.event_log.last(200) if e.detail_type == detail_type]


def evaluated(w: World, version: str) -> dict[str, Any]:
    """The evaluate stage on the model's "Model Trained"; the "Evaluation Completed" detail it published."""
    (trained,) = [e for e in events(w.p, "Model Trained") if e.body["detail"]["model_version"] == version]
    evaluate.handle_evaluate_event(w.p, trained.body)
    (done,) = [e for e in events(w.p, "Evaluation Completed") if e.body["detail"]["model_version"] == version]
    return dict(done.body["detail"])


def gated(w: World, version: str) -> dict[str, Any]:
    """The gate on the model's "Evaluation Completed", then on the registry's state change it caused."""
    (done,) = [e for e in events(w.p, "Evaluation Completed") if e.body["detail"]["model_version"] == version]
    gate.handle_gate_event(w.p, done.body)
    changes = [
        e
        for e in events(w.p, "SageMaker Model Package State Change")
        if e.body["detail"]["CustomerMetadataProperties"].get("docllm:model_version") == version
        and e.body["detail"]["ModelApprovalStatus"] != "PendingManualApproval"
    ]
    return gate.handle_gate_event(w.p, changes[-1].body)


def expect_describe(w: World, version: str, job_id: str) -> None:
    """What ``docllm manifest verify`` asks Bedrock: the job still names this custom model."""
    extra = {"jobArn": job_arn(job_id), "outputModelArn": model_arn(job_id)}
    response = described("Completed", version, **extra)
    w.stub.add_response("get_model_customization_job", response, {"jobIdentifier": version})


def test_a_completed_job_is_evaluated_from_bedrocks_metrics_gated_registered_and_attested(world: World) -> None:
    w = world
    version = complete_job(w, "req-1", "abcdefghijkl", train_loss=1.25, val_loss=1.5)

    detail = evaluated(w, version)
    assert detail["request_id"] == "req-1"
    assert detail["metrics"] == {
        "bedrock_training_loss": 1.25,
        "bedrock_training_perplexity": pytest.approx(2.718281828459045**1.25, rel=1e-6),
        "bedrock_validation_loss": 1.5,
        "bedrock_validation_perplexity": pytest.approx(2.718281828459045**1.5, rel=1e-6),
    }
    assert not [r for _, r in w.p.state.query(JOBS_PK) if r["stage"] == "evaluate"]  # no job: nothing to load
    report_body = w.p.objects.get(w.art, detail["report_uri"].split(f"{w.art}/", 1)[1])
    assert hashlib.sha256(report_body).hexdigest() == detail["report_sha256"]
    report = json.loads(report_body)
    assert {n["metric"] for n in report["not_measured"]} == set(NOT_MEASURED)
    assert all("Provisioned Throughput" in n["reason"] for n in report["not_measured"])
    assert report["sources"]["bedrock_validation_loss"] == "GetModelCustomizationJob validation loss"
    assert report["validation"]["rows"] == 2 and report["validation"]["name"] == "validation_metrics.csv"
    assert report["custom_model_arn"] == model_arn("abcdefghijkl")
    assert "heldout_loss" not in detail["metrics"] and "qa_token_f1" not in detail["metrics"]  # no made-up figures

    out = gated(w, version)
    assert out["outcome"] == "Approved" and out["champion"] == version
    package = w.p.registry.get(version)
    assert (package.status, package.export_uri) == ("Approved", model_arn("abcdefghijkl"))
    assert package.tokenizer_version is None and package.training_job == version
    assert package.metrics["bedrock_validation_loss"] == 1.5
    assert "Amazon Bedrock custom model" in package.description
    (approved,) = events(w.p, "Model Approved")
    assert approved.body["detail"]["reasons"][0] == "bedrock_validation_loss 1.5 ≤ threshold 2 ✓"

    statement = manifests.show(w.p, version)
    (subject,) = statement["subject"]
    assert subject["uri"] == model_arn("abcdefghijkl") and subject["annotations"]["kind"] == "bedrock-custom-model"
    internal = statement["predicate"]["buildDefinition"]["internalParameters"]
    bedrock = internal["bedrock"]
    assert bedrock["weights"].startswith("none: Amazon Bedrock keeps a custom model's weights")
    assert bedrock["customizationJobArn"] == job_arn("abcdefghijkl") and bedrock["customizationJob"] == version
    assert bedrock["baseModelIdentifier"] == BASE_MODEL
    assert bedrock["hyperParameters"] == {"batchSize": "1", "epochCount": "2", "learningRate": "0.00001"}
    assert "export" not in internal["artefacts"]
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    data = {d["name"]: d for d in deps if d.get("annotations", {}).get("kind") == "customization-data"}
    summary = json.loads(w.p.objects.get(w.art, f"customizations/{FAMILY}/{version}/data.json"))
    assert data["train.jsonl"]["digest"]["sha256"] == summary["files"]["train.jsonl"]
    assert set(data) == {"train.jsonl", "data.json", *(["validation.jsonl"] if summary["validation_records"] else [])}
    assert len([d for d in deps if d.get("annotations", {}).get("kind") == "document"]) == DOCS + 3
    (base,) = [d for d in deps if d.get("annotations", {}).get("kind") == "bedrock-base-model"]
    assert "digest" not in base  # the provider's model: nothing anyone can re-hash
    byproducts = {b["name"] for b in statement["predicate"]["runDetails"]["byproducts"]}
    assert {"evaluation-report", "evaluation-report-html"} <= byproducts
    assert any(name.endswith("validation_metrics.csv") for name in byproducts)

    expect_describe(w, version, "abcdefghijkl")
    report_ok = manifests.verify(w.p, version)
    assert report_ok.ok, report_ok.mismatches
    assert report_ok.checked["customization-data"] == len(data) and report_ok.checked["bedrock-job"] == 1
    assert report_ok.checked["document"] == DOCS + 3

    # Data changed after Bedrock read it: verification re-hashes it and names the file.
    w.p.objects.put(w.art, f"customizations/{FAMILY}/{version}/train.jsonl", b'{"prompt": "x", "completion": "y"}\n')
    expect_describe(w, version, "abcdefghijkl")
    tampered = manifests.verify(w.p, version)
    assert not tampered.ok
    assert [(m.kind, m.subject.rsplit("/", 1)[-1]) for m in tampered.mismatches] == [("digest", "train.jsonl")]


def test_the_deploy_stage_refuses_a_bedrock_custom_model_with_the_reason(world: World) -> None:
    w = world
    version = complete_job(w, "req-2", "bcdefghijklm", train_loss=1.2, val_loss=1.4)
    evaluated(w, version)
    assert gated(w, version)["outcome"] == "Approved"
    with pytest.raises(NotDeployableError, match="Provisioned Throughput") as refused:
        deploy.deploy(w.p, version, "local", "req-deploy")
    assert "Amazon Bedrock custom model" in str(refused.value)
    assert not events(w.p, "Model Deployed")


def test_a_validation_loss_over_the_threshold_is_rejected_and_attested(world: World) -> None:
    w = world
    version = complete_job(w, "req-3", "cdefghijklmn", train_loss=2.2, val_loss=2.5)
    assert evaluated(w, version)["metrics"]["bedrock_validation_loss"] == 2.5
    out = gated(w, version)
    assert out["outcome"] == "Rejected" and out["champion"] is None
    assert w.p.registry.get(version).status == "Rejected"
    (rejected,) = events(w.p, "Model Rejected")
    assert "bedrock_validation_loss 2.5 > threshold 2 ✗" in rejected.body["detail"]["reasons"]
    expect_describe(w, version, "cdefghijklmn")
    assert manifests.verify(w.p, version).ok


def test_no_validation_loss_is_no_number_and_the_required_rule_fails(world: World) -> None:
    w = world
    version = complete_job(w, "req-4", "defghijklmno", train_loss=1.1, val_loss=None, files=False)
    detail = evaluated(w, version)
    assert detail["metrics"] == {"bedrock_training_loss": 1.1}  # from the API; nothing invented
    (item,) = [i for _, i in w.p.state.query(EVALUATIONS_PK) if i["model_version"] == version]
    report = json.loads(w.p.objects.get(w.art, item["report_uri"].split(f"{w.art}/", 1)[1]))
    assert any("no validation loss" in n for n in report["notes"])
    assert any("no step_wise_training_metrics.csv" in n for n in report["notes"])
    out = gated(w, version)
    assert out["outcome"] == "Rejected"
    assert "bedrock_validation_loss missing ✗" in events(w.p, "Model Rejected")[0].body["detail"]["reasons"]


def test_a_regression_against_the_champion_is_rejected_and_the_champion_stays(world: World) -> None:
    w = world
    first = complete_job(w, "req-5", "efghijklmnop", train_loss=1.0, val_loss=1.5)
    evaluated(w, first)
    assert gated(w, first)["champion"] == first
    second = complete_job(w, "req-6", "fghijklmnopq", train_loss=1.0, val_loss=1.6)  # 6.7% worse > 2%
    evaluated(w, second)
    out = gated(w, second)
    assert out["outcome"] == "Rejected" and out["champion"] == first
    (rejected,) = events(w.p, "Model Rejected")
    assert any("vs champion 1.5" in r and "✗" in r for r in rejected.body["detail"]["reasons"])


def test_a_redelivered_model_trained_publishes_one_evaluation(world: World) -> None:
    w = world
    version = complete_job(w, "req-7", "ghijklmnopqr", train_loss=1.0, val_loss=1.2)
    evaluated(w, version)
    (trained,) = [e for e in events(w.p, "Model Trained") if e.body["detail"]["model_version"] == version]
    again = evaluate.handle_evaluate_event(w.p, trained.body)
    assert again["outcome"] == "already evaluated"
    assert len(events(w.p, "Evaluation Completed")) == 1


def test_a_model_record_without_a_job_is_declined_by_the_gate_manifest_not_crashed(world: World) -> None:
    w = world
    version = complete_job(w, "req-8", "hijklmnopqrs", train_loss=1.0, val_loss=1.2)
    evaluated(w, version)
    model = w.p.state.get(MODELS_PK, version)
    assert model is not None
    w.p.state.put(MODELS_PK, version, {k: v for k, v in model.items() if k != "job"})
    from docllm.manifest.exceptions import ManifestInputError

    with pytest.raises(ManifestInputError, match="names no training job"):
        gated(w, version)
    assert w.p.registry.get(version).training_job is None  # registered without a KeyError
