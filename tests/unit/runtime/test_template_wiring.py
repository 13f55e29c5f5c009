"""The local runtime's wiring is read from template.yaml, so the two cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from docllm.exceptions import ConfigurationError
from docllm.runtime.patterns import matches
from docllm.runtime.template import load_template, read_wiring
from tests.conftest import REPO

WIRING = read_wiring(REPO / "template.yaml")

# (function, queue, bus, sources, detail types): the routing table of docs/architecture.md.
ROUTES = [
    ("IngestFunction", "IngestQueue", "default", ["aws.s3"], ["Object Created", "Object Deleted"]),
    ("IngestFunction", "IngestQueue", "DocllmBus", ["docllm.ingest"], ["Document Reprocess Requested"]),
    ("IndexFunction", "IndexQueue", "DocllmBus", ["docllm.ingest"], ["Document Processed", "Document Removed"]),
    ("DatasetFunction", "DatasetQueue", "DocllmBus", ["docllm.dataset"], ["Dataset Build Requested"]),
    (
        "PipelinesFunction",
        "PipelinesQueue",
        "DocllmBus",
        [
            "docllm.ingest",
            "docllm.pipelines",
            "docllm.pipeline",
            "docllm.dataset",
            "docllm.tokenizer",
            "docllm.shards",
            "docllm.training",
            "docllm.evaluate",
            "docllm.gate",
            "docllm.deploy",
        ],
        [
            "Document Processed",
            "Document Removed",
            "Pipeline Run Requested",
            "Pipeline Cancel Requested",
            "Stage Failed",
            "Dataset Built",
            "Tokenizer Trained",
            "Shards Built",
            "Model Trained",
            "Evaluation Completed",
            "Model Approved",
            "Model Rejected",
            "Model Deployed",
        ],
    ),
    ("TokenizerFunction", "TokenizerQueue", "DocllmBus", ["docllm.dataset"], ["Dataset Built"]),
    ("ShardsFunction", "ShardsQueue", "DocllmBus", ["docllm.tokenizer"], ["Tokenizer Trained"]),
    (
        "RetrieverFunction",
        "RetrieverQueue",
        "DocllmBus",
        ["docllm.tokenizer", "docllm.retriever"],
        ["Tokenizer Trained", "Retriever Training Requested"],
    ),
    (
        "TrainFunction",
        "TrainQueue",
        "DocllmBus",
        ["docllm.shards", "docllm.training", "docllm.dataset"],
        ["Shards Built", "Training Requested", "Dataset Built"],
    ),
    (
        "EvaluateFunction",
        "EvaluateQueue",
        "DocllmBus",
        ["docllm.training", "docllm.evaluate"],
        ["Model Trained", "Evaluation Requested"],
    ),
    (
        "GateFunction",
        "GateQueue",
        "DocllmBus",
        ["docllm.evaluate", "docllm.review"],
        ["Evaluation Completed", "Model Review Submitted"],
    ),
    ("GateFunction", "GateQueue", "default", ["aws.sagemaker"], ["SageMaker Model Package State Change"]),
    ("CustomizeFunction", "CustomizeQueue", "default", ["aws.bedrock"], ["Model Customization Job State Change"]),
    (
        "DeployFunction",
        "DeployQueue",
        "DocllmBus",
        ["docllm.gate", "docllm.deploy"],
        ["Model Approved", "Model Rejected", "Deployment Requested"],
    ),
    ("JobEventsFunction", "JobEventsQueue", "default", ["aws.sagemaker"], ["SageMaker Training Job State Change"]),
]


@pytest.mark.parametrize(("function", "queue", "bus", "sources", "types"), ROUTES)
def test_each_route_is_one_rule_to_one_queue_to_one_function(function, queue, bus, sources, types):
    (rule,) = [r for r in WIRING.rules if queue in r.targets and r.bus == bus and r.pattern["source"] == sources]
    assert rule.bus == bus
    assert rule.pattern["source"] == sources and rule.pattern["detail-type"] == types
    assert WIRING.consumer_of(queue).name == function
    assert WIRING.queues[queue].dlq in WIRING.dlqs


def test_every_function_handler_file_exists_and_every_queue_with_a_consumer_has_a_dlq():
    for fn in WIRING.functions.values():
        assert (REPO / fn.code_uri / "app.py").is_file(), fn.name
        for src in fn.sqs_sources:
            assert src.report_failures, f"{fn.name} must report partial batch failures"
            assert WIRING.queues[src.queue].max_receive_count < 100


def test_the_raw_bucket_sends_eventbridge_notifications_and_the_others_do_not():
    assert WIRING.buckets["RawBucket"].eventbridge
    assert not WIRING.buckets["ProcessedBucket"].eventbridge


def s3_object_event(key: str, detail_type: str = "Object Created") -> dict:
    return {
        "source": "aws.s3",
        "detail-type": detail_type,
        "detail": {"bucket": {"name": "RawBucket"}, "object": {"key": key, "version-id": "v1"}},
    }


@pytest.mark.parametrize("detail_type", ["Object Created", "Object Deleted"])
def test_the_raw_object_rule_routes_documents_but_not_benchmarks(detail_type: str):
    # Benchmarks hold expected answers: ingested, they would leak into training data and the index.
    (rule,) = [r for r in WIRING.rules if r.name == "RawObjectEventsRule"]
    assert matches(rule.pattern, s3_object_event("s3/x.md", detail_type))
    assert matches(rule.pattern, s3_object_event("team/benchmarks/notes.md", detail_type))
    assert not matches(rule.pattern, s3_object_event("benchmarks/x.jsonl", detail_type))
    assert not matches(rule.pattern, s3_object_event("benchmarks/tasks/limits.yaml", detail_type))


def test_the_compliance_bucket_exists_locally_too_as_a_plain_versioned_bucket():
    # Object Lock is AWS's; locally, manifests go to the append-only store, and the bucket is inert.
    bucket = WIRING.buckets["ComplianceBucket"]
    assert bucket.versioned and not bucket.eventbridge
    gate = WIRING.functions["GateFunction"].environment
    assert gate["DOCLLM_COMPLIANCE_BUCKET"] == "ComplianceBucket"
    assert gate["DOCLLM_MANIFEST_RETENTION_DAYS"] == "3650"


def test_the_api_routes_are_served_by_the_api_function():
    routes = {(r.method, r.path) for r in WIRING.functions["ApiFunction"].http_routes}
    assert {("GET", "/v1/search"), ("GET", "/openapi.json"), ("POST", "/v1/ask")} <= routes


def test_a_new_champion_and_a_deployment_request_reach_the_deployer_and_a_review_does_not():
    (rule,) = [r for r in WIRING.rules if r.name == "DeployRequestsRule"]
    assert matches(rule.pattern, {"source": "docllm.gate", "detail-type": "Model Approved", "detail": {}})
    assert matches(rule.pattern, {"source": "docllm.deploy", "detail-type": "Deployment Requested", "detail": {}})
    assert not matches(rule.pattern, {"source": "docllm.deploy", "detail-type": "Model Deployed", "detail": {}})
    assert not matches(rule.pattern, {"source": "docllm.review", "detail-type": "Model Approved", "detail": {}})
    assert WIRING.consumer_of("DeployQueue").name == "DeployFunction"


def test_the_templates_aws_deploy_target_never_applies_to_the_local_runtime(monkeypatch):
    # The runtime folds every function's environment into one process: DeployTarget's default
    # (sagemaker) must not follow, or local approvals would be refused and /v1/ask would call AWS.
    from docllm.runtime.local import local_environment

    monkeypatch.delenv("DOCLLM_DEPLOY_TARGET", raising=False)
    env: dict[str, str] = {}
    for fn in WIRING.functions.values():
        env.update(fn.environment)
    assert env["DOCLLM_DEPLOY_TARGET"] == "local"  # the local wiring resolves DeployTarget to local
    # and whatever the functions' environment says, the runtime's environment forces it again.
    aws = read_wiring(REPO / "template.yaml", parameters={"DeployTarget": "sagemaker"})
    aws_env: dict[str, str] = {}
    for fn in aws.functions.values():
        aws_env.update(fn.environment)
    assert aws_env["DOCLLM_DEPLOY_TARGET"] == "sagemaker"
    assert local_environment(aws_env, Path("/nonexistent"))["DOCLLM_DEPLOY_TARGET"] == "local"


def test_a_rule_targeting_an_undeclared_queue_is_a_configuration_error(tmp_path: Path):
    (tmp_path / "t.yaml").write_text(
        "Resources:\n"
        "  R:\n    Type: AWS::Events::Rule\n    Properties:\n"
        "      EventPattern: {source: [x]}\n      Targets: [{Id: q, Arn: !GetAtt Missing.Arn}]\n"
        "  Missing:\n    Type: AWS::SNS::Topic\n"
    )
    with pytest.raises(ConfigurationError):
        read_wiring(tmp_path / "t.yaml")


def test_a_template_edited_in_place_is_read_again_and_each_caller_gets_its_own_copy(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  Q:\n    Type: AWS::SQS::Queue\n", encoding="utf-8")
    first = load_template(path)
    first["Resources"]["Changed"] = {}  # a caller changing its copy changes nobody else's
    assert load_template(path)["Resources"] == {"Q": {"Type": "AWS::SQS::Queue"}}
    path.write_text("Resources:\n  R:\n    Type: AWS::SQS::Queue\n", encoding="utf-8")
    assert list(load_template(path)["Resources"]) == ["R"]
