"""Static checks of ``template.yaml``: routing the local runtime relies on, and security invariants.

The template is read with cfn-lint's decoder, which understands the short-form
intrinsics (``!Ref``, ``!GetAtt``, ``!Sub`` ...) and turns them into their long
form (``{"Ref": ...}``). Full ``cfn-lint``/``checkov`` runs live in
``scripts/template-lint.sh``, ``sam validate --lint``, the check of the SAM
transform's output (no generated role, no managed policy) and ``sam build`` in
``scripts/sam-check.sh`` (10+ s each, too slow for the unit tier).

Hardening (issue 12) is checked against tables here: the sources each function
may publish (cross-checked with what its service-layer module constructs), the
queue each function may consume and dead-letter to, the OpenSearch Serverless
data-access split, the SageMaker launch conditions (cross-checked with the
instance types the code asks for), the alarms every queue and function has, and
the production ``Rules`` (evaluated, not just read).
"""

from __future__ import annotations

import ast
import functools
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from docllm.adapters.aws.sagemaker import has_local_storage
from docllm.events.contracts import CONTRACTS, StageFailed
from docllm.ports.jobs import JobSpec
from docllm.runtime.patterns import matches
from docllm.runtime.template import read_wiring
from docllm.training.families import load_families

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"

Tpl = dict[str, Any]
KMS_KEY_ARN = {"Fn::GetAtt": ["DocllmKey", "Arn"]}
KMS_KEY_REF = {"Ref": "DocllmKey"}

# The routing table every implementation of the platform (AWS and the local
# runtime) must agree on: function, code dir, queue, batch size, max receives,
# rule, bus (None = default bus), event pattern.
ROUTES: list[tuple[str, str, str, int, int, str, str | None, dict[str, Any]]] = [
    (
        "IngestFunction",
        "ingest",
        "IngestQueue",
        10,
        10,
        "RawObjectEventsRule",
        None,
        {
            "source": ["aws.s3"],
            "detail-type": ["Object Created", "Object Deleted"],
            # benchmarks/ holds evaluation benchmarks (expected answers), never documents.
            "detail": {
                "bucket": {"name": [{"Ref": "RawBucket"}]},
                "object": {"key": [{"anything-but": {"prefix": "benchmarks/"}}]},
            },
        },
    ),
    (
        "IngestFunction",
        "ingest",
        "IngestQueue",
        10,
        10,
        "IngestReprocessRule",
        "DocllmBus",
        {"source": ["docllm.ingest"], "detail-type": ["Document Reprocess Requested"]},
    ),
    (
        "IndexFunction",
        "index",
        "IndexQueue",
        10,
        10,
        "IndexDocumentEventsRule",
        "DocllmBus",
        {
            "source": ["docllm.ingest"],
            "detail-type": ["Document Processed", "Document Removed"],
        },
    ),
    (
        "DatasetFunction",
        "dataset",
        "DatasetQueue",
        1,
        3,
        "DatasetRequestsRule",
        "DocllmBus",
        {
            "source": ["docllm.dataset"],
            "detail-type": ["Dataset Build Requested"],
        },
    ),
    (
        "TokenizerFunction",
        "tokenizer",
        "TokenizerQueue",
        1,
        3,
        "TokenizerRequestsRule",
        "DocllmBus",
        {
            "source": ["docllm.dataset"],
            "detail-type": ["Dataset Built"],
        },
    ),
    (
        "ShardsFunction",
        "shards",
        "ShardsQueue",
        1,
        3,
        "ShardsRequestsRule",
        "DocllmBus",
        {
            "source": ["docllm.tokenizer"],
            "detail-type": ["Tokenizer Trained"],
        },
    ),
    (
        "RetrieverFunction",
        "retriever",
        "RetrieverQueue",
        1,
        3,
        "RetrieverRequestsRule",
        "DocllmBus",
        {
            "source": ["docllm.tokenizer", "docllm.retriever"],
            "detail-type": ["Tokenizer Trained", "Retriever Training Requested"],
        },
    ),
    (
        "TrainFunction",
        "train",
        "TrainQueue",
        1,
        3,
        "TrainRequestsRule",
        "DocllmBus",
        {
            "source": ["docllm.shards", "docllm.training", "docllm.dataset"],
            "detail-type": ["Shards Built", "Training Requested", "Dataset Built"],
        },
    ),
    (
        "EvaluateFunction",
        "evaluate",
        "EvaluateQueue",
        1,
        3,
        "EvaluateRequestsRule",
        "DocllmBus",
        {
            "source": ["docllm.training", "docllm.evaluate"],
            "detail-type": ["Model Trained", "Evaluation Requested"],
        },
    ),
    (
        "GateFunction",
        "gate",
        "GateQueue",
        1,
        3,
        "GateRequestsRule",
        "DocllmBus",
        {
            "source": ["docllm.evaluate", "docllm.review"],
            "detail-type": ["Evaluation Completed", "Model Review Submitted"],
        },
    ),
    (
        "GateFunction",
        "gate",
        "GateQueue",
        1,
        3,
        "ModelPackageStateRule",
        None,
        {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Model Package State Change"],
            "detail": {"ModelPackageGroupName": [{"prefix": {"Fn::Sub": "docllm-${Stage}-"}}]},
        },
    ),
    (
        "DeployFunction",
        "deploy",
        "DeployQueue",
        1,
        3,
        "DeployRequestsRule",
        "DocllmBus",
        {
            "source": ["docllm.gate", "docllm.deploy"],
            "detail-type": ["Model Approved", "Model Rejected", "Deployment Requested"],
        },
    ),
    (
        "JobEventsFunction",
        "jobs",
        "JobEventsQueue",
        10,
        5,
        "SageMakerJobStateRule",
        None,
        {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Training Job State Change"],
            "detail": {
                "TrainingJobName": [{"prefix": {"Fn::Sub": "docllm-${Stage}-"}}],
                "TrainingJobStatus": ["Completed", "Failed", "Stopped"],
            },
        },
    ),
    (
        "RollbackFunction",
        "rollback",
        "RollbackQueue",
        1,
        5,
        "ServingAlarmStateRule",
        None,
        {
            # CloudWatch announces alarm state changes on the default bus.
            "source": ["aws.cloudwatch"],
            "detail-type": ["CloudWatch Alarm State Change"],
            "detail": {
                "alarmName": [{"prefix": {"Fn::Sub": "docllm-${Stage}-serving-"}}],
                "state": {"value": ["ALARM", "OK"]},
            },
        },
    ),
    (
        "PipelinesFunction",
        "pipelines",
        "PipelinesQueue",
        1,
        5,
        "PipelinesRule",
        "DocllmBus",
        {
            "source": [
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
            "detail-type": [
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
        },
    ),
    (
        "RollbackFunction",
        "rollback",
        "RollbackQueue",
        1,
        5,
        "IncidentCloseRequestsRule",
        "DocllmBus",
        {"source": ["docllm.rollback"], "detail-type": ["Incident Close Requested"]},
    ),
    (
        "CustomizeFunction",
        "customize",
        "CustomizeQueue",
        1,
        5,
        "CustomizeJobStateRule",
        None,
        {
            # Bedrock announces customization job states on the default bus.
            "source": ["aws.bedrock"],
            "detail-type": ["Model Customization Job State Change"],
            "detail": {
                "jobName": [{"prefix": {"Fn::Sub": "docllm-${Stage}-"}}],
                "jobStatus": ["Completed", "Failed", "Stopped"],
            },
        },
    ),
]

GLOBAL_ENV = {
    "DOCLLM_BACKEND": "aws",
    "DOCLLM_STAGE": {"Ref": "Stage"},
    "DOCLLM_RAW_BUCKET": {"Ref": "RawBucket"},
    "DOCLLM_PROCESSED_BUCKET": {"Ref": "ProcessedBucket"},
    "DOCLLM_ARTIFACT_BUCKET": {"Ref": "ArtifactBucket"},
    "DOCLLM_STATE_TABLE": {"Ref": "StateTable"},
    "DOCLLM_IDEMPOTENCY_TABLE": {"Ref": "IdempotencyTable"},
    "DOCLLM_EVENT_BUS": {"Ref": "DocllmBus"},
    "DOCLLM_KMS_KEY_ARN": KMS_KEY_ARN,
    "DOCLLM_SEARCH_ENDPOINT": {"Fn::GetAtt": ["SearchCollection", "CollectionEndpoint"]},
    "DOCLLM_SEARCH_SERVICE": "aoss",
    "POWERTOOLS_METRICS_NAMESPACE": "docllm",
    "LOG_LEVEL": {"Ref": "LogLevel"},
}
JOB_ENV = {
    "DOCLLM_IMAGE_TOKENIZER",
    "DOCLLM_IMAGE_TRAIN",
    "DOCLLM_IMAGE_EVALUATE",
    "DOCLLM_SUBNET_IDS",
    "DOCLLM_SECURITY_GROUP_IDS",
}
JOB_LAUNCHERS = {"TokenizerFunction", "ShardsFunction", "RetrieverFunction", "TrainFunction", "EvaluateFunction"}
# The role each launcher's jobs run as (and the only role it may pass), and the variable naming it.
# Evaluation jobs render user-supplied benchmark templates: their role may not write the weights.
JOB_ROLE_OF = {"EvaluateFunction": ("EvaluateJobRole", "DOCLLM_SAGEMAKER_EVALUATE_ROLE_ARN")}
DEFAULT_JOB_ROLE = ("SageMakerJobRole", "DOCLLM_SAGEMAKER_ROLE_ARN")
FUNCTIONS = {r[0] for r in ROUTES} | {"ApiFunction", "OutboxRelayFunction", "CanaryFunction"}
# Functions that touch SageMaker models/endpoints: the deployer makes them, the rollback handler
# points an endpoint back at a configuration, the API and the canary invoke them.
SERVING_FUNCTIONS = {"DeployFunction", "RollbackFunction", "ApiFunction", "CanaryFunction"}
QUEUE_OF = {r[0]: r[2] for r in ROUTES}
ALL_SOURCES = {c.SOURCE for c in CONTRACTS}
# events:source values each function may put on DocllmBus: the SOURCE of every contract
# its handler's service-layer code constructs (test_published_sources_match_what_the_handler_can_construct
# follows the calls). Launchers publish "Stage Failed" when SageMaker refuses a job; the
# completion stage publishes each job stage's completion event (its complete_job) or
# "Stage Failed" - so "Evaluation Completed" of an evaluation job is JobEventsFunction's; EvaluateFunction
# publishes it only for an Amazon Bedrock custom model, which it evaluates from Bedrock's metrics itself.
# The request events ("Dataset Build Requested" from the CLI, "Training Requested",
# "Evaluation Requested", "Deployment Requested") are published on AWS with the operator's
# own credentials, not by a function; "Model Review Submitted" only by the local CLI (on AWS a
# review is a status change in the SageMaker registry). The gate publishes "Model Approved" /
# "Model Rejected", the deployer "Model Deployed".
PUBLISHED_SOURCES: dict[str, set[str]] = {
    "IngestFunction": {"docllm.ingest"},
    "IndexFunction": {"docllm.index"},
    "DatasetFunction": {"docllm.dataset", "docllm.pipeline"},
    "TokenizerFunction": {"docllm.tokenizer", "docllm.pipeline"},
    "ShardsFunction": {"docllm.shards", "docllm.pipeline"},
    # A version trained before is announced again ("Retriever Trained"); a missing tokenizer fails the stage.
    "RetrieverFunction": {"docllm.retriever", "docllm.pipeline"},
    "TrainFunction": {"docllm.dataset", "docllm.pipeline"},
    "EvaluateFunction": {"docllm.evaluate", "docllm.pipeline"},
    "GateFunction": {"docllm.gate", "docllm.pipeline"},
    "DeployFunction": {"docllm.deploy", "docllm.pipeline"},
    "JobEventsFunction": {
        "docllm.tokenizer",
        "docllm.shards",
        "docllm.retriever",
        "docllm.training",
        "docllm.evaluate",
        "docllm.pipeline",
    },
    "ApiFunction": set(),
    # The rollback handler redeploys through the deployer's code ("Model Deployed") and announces
    # "Model Rolled Back" and the incidents it opens and closes.
    "RollbackFunction": {"docllm.deploy", "docllm.pipeline", "docllm.rollback"},
    "CanaryFunction": set(),
    # A Bedrock customization job ended: "Model Trained", or "Stage Failed" with Bedrock's reason.
    "CustomizeFunction": {"docllm.training", "docllm.pipeline"},
    # Its own events, "Training Requested" that starts a run's chain, and "Stage Failed" for a failed request.
    "PipelinesFunction": {"docllm.pipelines", "docllm.training", "docllm.pipeline"},
}
# The relay republishes what a stage committed to the outbox (service_layer.outbox.commit) in its
# own transaction; a function commits only events it may publish itself. So the relay needs the
# union of the functions' sources and nothing more: in particular never docllm.review, which no
# function publishes (a relay that could would let a forged review through on AWS).
PUBLISHED_SOURCES["OutboxRelayFunction"] = set().union(*PUBLISHED_SOURCES.values())
STAGE_PREFIX = "docllm-${Stage}-"
# Buckets on the CMK with access logging (the access-log bucket itself is neither).
DATA_BUCKETS = ["RawBucket", "ProcessedBucket", "ArtifactBucket", "ComplianceBucket"]
SAGEMAKER_ARN = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
JOB_ARN = SAGEMAKER_ARN + "training-job/docllm-${Stage}-*"
# The evaluate stage launches evaluation jobs only: docllm-<stage>-evaluate-... (jobs.job_name).
JOB_ARN_OF = {"EvaluateFunction": SAGEMAKER_ARN + "training-job/docllm-${Stage}-evaluate-*"}
# A family's model package group is docllm-<stage>-<family>; its versions model-package/<group>/<n>.
REGISTRY_ARNS = [
    {"Fn::Sub": SAGEMAKER_ARN + "model-package-group/docllm-${Stage}-*"},
    {"Fn::Sub": SAGEMAKER_ARN + "model-package/docllm-${Stage}-*/*"},
]
REGISTRY_READ = {
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:DescribeModelPackage",
    "sagemaker:ListModelPackages",
    "sagemaker:ListTags",
}
REGISTRY_WRITE = {
    "sagemaker:CreateModelPackageGroup",
    "sagemaker:CreateModelPackage",
    "sagemaker:UpdateModelPackage",
    "sagemaker:AddTags",
    "sagemaker:DeleteTags",
}
# What the deployer makes is named docllm-<stage>-<family>[-<digest>] (deploy/names.py).
SERVING_ARNS = {
    kind: {"Fn::Sub": SAGEMAKER_ARN + f"{kind}/docllm-${{Stage}}-*"}
    for kind in ("model", "endpoint-config", "endpoint")
}
BEDROCK_ARN = "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:"
SQS_CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"}
OUTBOX_FILTER = {"dynamodb": {"Keys": {"pk": {"S": ["outbox"]}}}, "eventName": ["INSERT"]}

# Intrinsics the local runtime's resolver implements; routing parts may use no others.
LOCAL_INTRINSICS = {
    "Ref",
    "Fn::GetAtt",
    "Fn::Sub",
    "Fn::Join",
    "Fn::If",
    "Fn::Equals",
    "Fn::Not",
    "Fn::And",
    "Fn::Or",
    "Fn::Select",
    "Fn::Split",
    "Condition",
}
# Event-pattern operators the local runtime's matcher implements.
PATTERN_OPERATORS = {"prefix", "anything-but", "exists", "numeric"}
# Actions AWS offers no resource-level scoping for; "*" is only tolerated with these.
STAR_RESOURCE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    # Read: no resource types and no condition keys (cloudwatch:namespace is PutMetricData's).
    "cloudwatch:GetMetricData",
    "cloudwatch:ListMetrics",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "dynamodb:ListStreams",
    "sagemaker:ListModelPackageGroups",
    # Scalable targets are named by generated ids, not by the endpoint.
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:DescribeScalableTargets",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
}


# ----------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    tpl, matches = decode(str(TEMPLATE))
    assert not matches, [str(m) for m in matches]
    assert tpl is not None
    return tpl


def resources_of(tpl: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] == rtype}


def props(tpl: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return tpl["Resources"][logical_id].get("Properties", {})


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def star_resource_violations(statements: list[dict[str, Any]]) -> list[str]:
    """Allow statements with a ``*`` resource whose actions are not in the AWS-requires-* list."""
    bad = []
    for st in statements:
        if st.get("Effect") != "Allow" or "*" not in as_list(st.get("Resource")):
            continue
        actions = set(as_list(st["Action"]))
        if not actions <= STAR_RESOURCE_ACTIONS:
            bad.append(f"{st.get('Sid', '?')}: {sorted(actions - STAR_RESOURCE_ACTIONS)}")
    return bad


def intrinsic_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                yield key
            yield from intrinsic_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from intrinsic_names(item)


def pattern_operators(pattern: Any) -> Iterator[str]:
    """Every operator used inside the value lists of an event pattern."""
    if isinstance(pattern, dict):
        for value in pattern.values():
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, dict) and not {"Ref", "Fn::Sub", "Fn::GetAtt"} & set(item):
                        yield from item.keys()
            else:
                yield from pattern_operators(value)


def bucket_policy_statements(tpl: dict[str, Any], bucket: str) -> list[dict[str, Any]]:
    for policy in resources_of(tpl, "AWS::S3::BucketPolicy").values():
        if policy["Properties"]["Bucket"] == {"Ref": bucket}:
            return list(policy["Properties"]["PolicyDocument"]["Statement"])
    return []


def env_of(tpl: dict[str, Any], fn: str) -> dict[str, Any]:
    merged = dict(tpl["Globals"]["Function"]["Environment"]["Variables"])
    merged.update(props(tpl, fn).get("Environment", {}).get("Variables", {}))
    return merged


def if_branches(node: Any) -> list[Any]:
    """Both branches of an ``Fn::If`` (without ``AWS::NoValue``), or ``[node]``."""
    if isinstance(node, dict) and "Fn::If" in node:
        return [b for b in node["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"}]
    return [node]


def role_statements(tpl: Tpl, role: str) -> list[dict[str, Any]]:
    """Every statement of an ``AWS::IAM::Role``'s inline policies, conditional ones included."""
    found: list[dict[str, Any]] = []
    for policy in props(tpl, role).get("Policies", []):
        for p in if_branches(policy):
            for st in as_list(p["PolicyDocument"]["Statement"]):
                found += if_branches(st)
    return found


def function_statements(tpl: Tpl, fn: str) -> list[dict[str, Any]]:
    """The statements of the role ``fn`` runs as (its own ``<fn>Role``)."""
    assert props(tpl, fn)["Role"] == {"Fn::GetAtt": [f"{fn}Role", "Arn"]}, fn
    return role_statements(tpl, f"{fn}Role")


def statements_with(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [st for st in statements if st["Effect"] == "Allow" and action in as_list(st["Action"])]


def by_sid(statements: list[dict[str, Any]], sid: str) -> dict[str, Any]:
    (st,) = [s for s in statements if s.get("Sid") == sid]
    return st


def sub_text(node: Any) -> str:
    """The text of a ``Fn::Sub`` (plain strings pass through)."""
    return node["Fn::Sub"] if isinstance(node, dict) else node


def alarms_on(tpl: Tpl, metric: str, dimension: str) -> dict[str, dict[str, Any]]:
    """``{resource named in the dimension: alarm properties}`` of the alarms on ``metric``."""
    found = {}
    for alarm in resources_of(tpl, "AWS::CloudWatch::Alarm").values():
        p = alarm["Properties"]
        if p.get("MetricName") != metric or p["Dimensions"][0]["Name"] != dimension:
            continue
        value = p["Dimensions"][0]["Value"]
        found[value["Fn::GetAtt"][0] if "Fn::GetAtt" in value else value["Ref"]] = p
    return found


def evaluate_rule(node: Any, params: dict[str, str]) -> Any:
    """Evaluate the intrinsics a template ``Rules`` block uses (Equals, Not, And, Or, Ref)."""
    if isinstance(node, dict):
        ((key, arg),) = node.items()
        if key == "Ref":
            return params[arg]
        if key == "Fn::Equals":
            return evaluate_rule(arg[0], params) == evaluate_rule(arg[1], params)
        if key == "Fn::Not":
            return not evaluate_rule(arg[0], params)
        if key == "Fn::And":
            return all(evaluate_rule(a, params) for a in arg)
        if key == "Fn::Or":
            return any(evaluate_rule(a, params) for a in arg)
        raise AssertionError(f"unexpected intrinsic in Rules: {key}")
    return node


def failed_assertions(tpl: Tpl, overrides: dict[str, str]) -> list[str]:
    """AssertDescriptions of every applicable rule that refuses these parameters."""
    params = {k: str(v.get("Default", "")) for k, v in tpl["Parameters"].items()} | overrides
    failed = []
    for rule in tpl["Rules"].values():
        if "RuleCondition" in rule and not evaluate_rule(rule["RuleCondition"], params):
            continue
        failed += [a["AssertDescription"] for a in rule["Assertions"] if not evaluate_rule(a["Assert"], params)]
    return failed


SERVICE_LAYER = REPO / "shared" / "docllm" / "service_layer"
CONTRACT_NAMES = {c.__name__: c for c in CONTRACTS}


@functools.cache
def service_module(
    name: str,
) -> tuple[dict[str, ast.FunctionDef], dict[str, tuple[str, str]], dict[str, str]]:
    """A service-layer module's top-level functions, the service-layer names it imports, and the
    service-layer modules it imports (``from docllm.service_layer import deploy as deployer``)."""
    tree = ast.parse((SERVICE_LAYER / f"{name}.py").read_text(encoding="utf-8"))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported = {
        alias.asname or alias.name: (str(node.module).rsplit(".", 1)[1], alias.name)
        for node in imports
        if (node.module or "").startswith("docllm.service_layer.")
        for alias in node.names
    }
    modules = {
        alias.asname or alias.name: alias.name
        for node in imports
        if node.module == "docllm.service_layer"
        for alias in node.names
        if (SERVICE_LAYER / f"{alias.name}.py").is_file()
    }
    return functions, imported, modules


def contracts_reached(module: str, function: str, seen: set[tuple[str, str]] | None = None) -> set[str]:
    """Contract classes constructed by ``module.function`` and the service-layer functions it calls.

    ``stage.complete_job(...)`` (the completion stage's dispatch to a job stage) reaches
    every job stage's ``complete_job``; ``kind = A if ... else B`` then ``kind(...)`` constructs
    both contracts.
    """
    seen = set() if seen is None else seen
    if (module, function) in seen:
        return set()
    seen.add((module, function))
    functions, imported, modules = service_module(module)
    found: set[str] = set()
    for node in ast.walk(functions[function]):
        if isinstance(node, ast.IfExp):
            chosen = {n.id for n in (node.body, node.orelse) if isinstance(n, ast.Name)}
            if chosen and chosen <= set(CONTRACT_NAMES):
                found |= chosen
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in CONTRACT_NAMES:
            found.add(f.id)
        elif isinstance(f, ast.Name) and f.id in functions:
            found |= contracts_reached(module, f.id, seen)
        elif isinstance(f, ast.Name) and f.id in imported and imported[f.id][1] in service_module(imported[f.id][0])[0]:
            found |= contracts_reached(*imported[f.id], seen)  # a function (not a class) of another module
        elif (
            isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and f.value.id in modules
            and f.attr in service_module(modules[f.value.id])[0]
        ):
            found |= contracts_reached(modules[f.value.id], f.attr, seen)  # deployer.deploy(...)
        elif isinstance(f, ast.Attribute) and f.attr == "complete_job":
            for path in sorted(SERVICE_LAYER.glob("*.py")):
                if "complete_job" in service_module(path.stem)[0]:
                    found |= contracts_reached(path.stem, "complete_job", seen)
    return found


def handler_entry(code_dir: str) -> tuple[str, str]:
    """``(service-layer module, function)`` a queue handler passes to ``handle_sqs_events``."""
    tree = ast.parse((REPO / "services" / code_dir / "app.py").read_text(encoding="utf-8"))
    (call,) = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "handle_sqs_events"
    ]
    entry = call.args[2]
    assert isinstance(entry, ast.Attribute) and isinstance(entry.value, ast.Name), code_dir
    return entry.value.id, entry.attr


# -------------------------------------------------------- the helpers can fail
def test_star_resource_check_flags_a_wildcard_statement() -> None:
    wildcard = [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*", "Sid": "Oops"}]
    tolerated = [{"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]
    assert star_resource_violations(wildcard) == ["Oops: ['s3:GetObject']"]
    assert star_resource_violations(tolerated) == []


def test_rule_evaluator_reads_conditions_and_refs() -> None:
    node = {"Fn::Not": [{"Fn::Equals": [{"Ref": "A"}, ""]}]}
    assert evaluate_rule(node, {"A": "x"}) is True
    assert evaluate_rule(node, {"A": ""}) is False
    with pytest.raises(AssertionError):
        evaluate_rule({"Fn::Contains": [["a"], "a"]}, {})


def test_role_statements_include_both_branches_of_a_conditional_policy() -> None:
    doc = {"PolicyDocument": {"Statement": [{"Sid": "A"}]}}
    tpl = {
        "Resources": {
            "R": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [
                        {"Fn::If": ["C", {"PolicyDocument": {"Statement": [{"Sid": "B"}]}}, {"Ref": "AWS::NoValue"}]},
                        doc,
                    ]
                },
            }
        }
    }
    assert [st["Sid"] for st in role_statements(tpl, "R")] == ["B", "A"]


def test_pattern_operator_walk_finds_nested_operators() -> None:
    pattern = {"detail": {"size": [{"numeric": [">", 0]}], "name": [{"Ref": "RawBucket"}, {"suffix": ".md"}]}}
    assert sorted(pattern_operators(pattern)) == ["numeric", "suffix"]


# ------------------------------------------------------------------ general
def test_every_parameter_has_a_default(template: Tpl) -> None:
    missing = [name for name, p in template["Parameters"].items() if "Default" not in p]
    assert not missing


def test_stage_parameter_allows_exactly_the_three_stages(template: Tpl) -> None:
    stage = template["Parameters"]["Stage"]
    assert stage["Default"] == "dev"
    assert set(stage["AllowedValues"]) == {"dev", "staging", "prod"}


def test_globals_define_every_variable_the_code_reads(template: Tpl) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    for name, value in GLOBAL_ENV.items():
        assert env.get(name) == value, name
    assert "POWERTOOLS_SERVICE_NAME" in env
    # The local resolver does not evaluate conditions inside environment variables.
    assert "Fn::If" not in set(intrinsic_names(env))


def test_signing_key_is_an_asymmetric_p256_key_only_the_gates_may_sign_with(template: Tpl) -> None:
    res = template["Resources"]["ManifestSigningKey"]
    assert res["DeletionPolicy"] == "Retain"  # old manifests must stay verifiable
    key = res["Properties"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert not key.get("EnableKeyRotation")  # KMS refuses rotation of asymmetric keys
    statements = key["KeyPolicy"]["Statement"]
    root = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    gate = {"Fn::GetAtt": ["GateFunctionRole", "Arn"]}
    api = {"Fn::GetAtt": ["ApiFunctionRole", "Arn"]}
    allows = [st for st in statements if st["Effect"] == "Allow"]
    # The model gate and the retriever gate (which runs where retriever jobs complete).
    retriever_gate = {"Fn::GetAtt": ["JobEventsFunctionRole", "Arn"]}
    signers = [st["Principal"] for st in allows if "kms:Sign" in as_list(st["Action"])]
    assert signers == [{"AWS": [gate, retriever_gate]}]
    verifiers = [st["Principal"]["AWS"] for st in allows if "kms:Verify" in as_list(st["Action"])]
    assert verifiers == [[gate, api]]
    # The account administers the key (so it stays manageable) ...
    assert by_sid(statements, "AccountAdministers")["Principal"] == root
    # ... but cannot delegate signing: a Deny on every principal but the gate's role.
    (deny,) = [st for st in statements if st["Effect"] == "Deny"]
    assert deny["Action"] == "kms:Sign" and deny["Principal"] == "*"
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [gate, retriever_gate]}}
    # No role grants signing through IAM either.
    for name in resources_of(template, "AWS::IAM::Role"):
        for st in role_statements(template, name):
            assert not {"kms:Sign", "kms:*"} & set(as_list(st["Action"])), (name, st.get("Sid"))
    assert props(template, "ManifestSigningKeyAlias") == {
        "AliasName": {"Fn::Sub": "alias/docllm-${Stage}-manifest-signing"},
        "TargetKeyId": {"Ref": "ManifestSigningKey"},
    }
    for signer in ("GateFunction", "JobEventsFunction"):
        assert env_of(template, signer)["DOCLLM_SIGNING_KEY_ARN"] == {"Fn::GetAtt": ["ManifestSigningKey", "Arn"]}
        assert env_of(template, signer)["DOCLLM_COMPLIANCE_BUCKET"] == {"Ref": "ComplianceBucket"}


def test_kms_key_rotates_and_is_administered_by_the_account(template: Tpl) -> None:
    key = props(template, "DocllmKey")
    assert key["EnableKeyRotation"] is True
    principals = [st["Principal"] for st in key["KeyPolicy"]["Statement"]]
    assert {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}} in principals
    assert props(template, "DocllmKeyAlias")["TargetKeyId"] == {"Ref": "DocllmKey"}


# ------------------------------------------------------------------ buckets
def test_every_bucket_blocks_public_access_and_enforces_ownership(template: Tpl) -> None:
    buckets = resources_of(template, "AWS::S3::Bucket")
    assert set(buckets) == {"RawBucket", "ProcessedBucket", "ArtifactBucket", "AccessLogBucket", "ComplianceBucket"}
    for name, bucket in buckets.items():
        p = bucket["Properties"]
        assert all(
            p["PublicAccessBlockConfiguration"][k] is True
            for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        ), name
        assert p["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}], name
        assert p["VersioningConfiguration"]["Status"] == "Enabled", name
        rules = p["LifecycleConfiguration"]["Rules"]
        # Write-once manifests never expire (see test_compliance_bucket_is_write_once_...).
        assert any("NoncurrentVersionExpiration" in r for r in rules) != (name == "ComplianceBucket"), name


def test_raw_document_versions_are_kept_at_least_as_long_as_the_manifests_that_name_them(template: Tpl) -> None:
    # A manifest names each input document by its raw bucket version id; verification reads it back.
    def noncurrent_days(bucket: str) -> Any:
        (rule,) = [r for r in props(template, bucket)["LifecycleConfiguration"]["Rules"]
                   if "NoncurrentVersionExpiration" in r]  # fmt: skip
        return rule["NoncurrentVersionExpiration"]["NoncurrentDays"]

    assert noncurrent_days("RawBucket") == {"Ref": "RawNoncurrentVersionDays"}
    assert noncurrent_days("ProcessedBucket") == {"Ref": "NoncurrentVersionDays"}
    params = template["Parameters"]
    assert params["RawNoncurrentVersionDays"]["Default"] >= params["ManifestRetentionDays"]["Default"]
    assert "ManifestRetentionDays" in params["RawNoncurrentVersionDays"]["Description"]


def test_data_buckets_encrypt_with_the_cmk_and_log_access(template: Tpl) -> None:
    for name in DATA_BUCKETS:
        p = props(template, name)
        (rule,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KMS_KEY_ARN}
        assert rule["BucketKeyEnabled"] is True
        assert p["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogBucket"}


def test_access_log_bucket_uses_sse_s3_because_log_delivery_requires_it(template: Tpl) -> None:
    (rule,) = props(template, "AccessLogBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert "LoggingConfiguration" not in props(template, "AccessLogBucket")


@pytest.mark.parametrize("bucket", [*DATA_BUCKETS, "AccessLogBucket"])
def test_bucket_policy_denies_plain_http_and_foreign_encryption(template: Tpl, bucket: str) -> None:
    statements = bucket_policy_statements(template, bucket)
    denies = [st for st in statements if st["Effect"] == "Deny"]
    assert any(
        st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false" and st["Action"] == "s3:*"
        for st in denies
    )
    assert any(
        st["Action"] == "s3:PutObject"
        and "s3:x-amz-server-side-encryption" in st["Condition"].get("StringNotEquals", {})
        for st in denies
    )


@pytest.mark.parametrize("bucket", DATA_BUCKETS)
def test_data_bucket_policy_denies_a_put_naming_another_kms_key(template: Tpl, bucket: str) -> None:
    # A put without the header gets the bucket default (our key); one naming any other key is refused.
    (deny,) = [
        st
        for st in bucket_policy_statements(template, bucket)
        if st["Effect"] == "Deny"
        and "s3:x-amz-server-side-encryption-aws-kms-key-id" in st.get("Condition", {}).get("StringNotEquals", {})
    ]
    assert deny["Action"] == "s3:PutObject" and deny["Principal"] == "*"
    assert deny["Resource"] == {"Fn::Sub": f"${{{bucket}.Arn}}/*"}
    assert deny["Condition"] == {
        "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": KMS_KEY_ARN},
        "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"},
    }


@pytest.mark.parametrize("bucket", DATA_BUCKETS)
def test_data_bucket_policy_denies_aws_kms_without_our_key_id(template: Tpl, bucket: str) -> None:
    # "aws:kms" with no key id would make S3 use the AWS managed key (aws/s3), not ours.
    (deny,) = [st for st in bucket_policy_statements(template, bucket) if st.get("Sid") == "DenyKmsWithoutOurKeyId"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:PutObject" and deny["Principal"] == "*"
    assert deny["Resource"] == {"Fn::Sub": f"${{{bucket}.Arn}}/*"}
    assert deny["Condition"] == {
        "StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
        "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "true"},
    }


def test_only_the_raw_bucket_sends_events_to_eventbridge(template: Tpl) -> None:
    senders = [
        name
        for name, b in resources_of(template, "AWS::S3::Bucket").items()
        if b["Properties"]
        .get("NotificationConfiguration", {})
        .get("EventBridgeConfiguration", {})
        .get("EventBridgeEnabled")
    ]
    assert senders == ["RawBucket"]


def test_compliance_bucket_is_write_once_in_compliance_mode_for_the_configured_retention(template: Tpl) -> None:
    res = template["Resources"]["ComplianceBucket"]
    assert res["DeletionPolicy"] == "Retain" and res["UpdateReplacePolicy"] == "Retain"
    p = res["Properties"]
    # Object Lock needs versioning, and can only be switched on when the bucket is created.
    assert p["ObjectLockEnabled"] is True and p["VersioningConfiguration"]["Status"] == "Enabled"
    assert p["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": {"Ref": "ManifestRetentionDays"}}},
    }
    retention = template["Parameters"]["ManifestRetentionDays"]
    assert retention["Type"] == "Number" and retention["Default"] == 3650 and retention["MinValue"] >= 1
    # Nothing may expire a manifest version; only failed uploads are cleaned up.
    for rule in p["LifecycleConfiguration"]["Rules"]:
        assert set(rule) <= {"Id", "Status", "AbortIncompleteMultipartUpload"}, rule
    # A put or retention change naming GOVERNANCE (which can be bypassed) is refused.
    (deny,) = [
        st for st in bucket_policy_statements(template, "ComplianceBucket") if "s3:object-lock-mode" in json.dumps(st)
    ]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert set(deny["Action"]) == {"s3:PutObject", "s3:PutObjectRetention"}
    assert deny["Condition"] == {
        "StringNotEquals": {"s3:object-lock-mode": "COMPLIANCE"},
        "Null": {"s3:object-lock-mode": "false"},
    }
    # The store is configured from the template: bucket, retention (the local runtime reads these too).
    env = env_of(template, "GateFunction")
    assert env["DOCLLM_COMPLIANCE_BUCKET"] == {"Ref": "ComplianceBucket"}
    assert env["DOCLLM_MANIFEST_RETENTION_DAYS"] == {"Ref": "ManifestRetentionDays"}
    assert env["DOCLLM_GIT_REPOSITORY"] == {"Ref": "GitRepository"}


def test_only_the_gate_writes_manifests_and_may_set_their_retention(template: Tpl) -> None:
    compliance = json.dumps({"Fn::Sub": "${ComplianceBucket.Arn}/*"})
    writers = {
        n: set(as_list(st["Action"]))
        for n in FUNCTIONS
        for st in function_statements(template, n)
        if json.dumps(st["Resource"]) == compliance
    }
    assert writers == {"GateFunction": {"s3:PutObject", "s3:PutObjectRetention", "s3:GetObject"}}
    # Never the actions that would undo write-once (bypassing governance, deleting versions).
    for name in FUNCTIONS:
        for st in function_statements(template, name):
            assert not {
                "s3:BypassGovernanceRetention",
                "s3:DeleteObjectVersion",
                "s3:PutBucketObjectLockConfiguration",
            } & set(as_list(st["Action"])), (name, st.get("Sid"))


# ------------------------------------------------------------ tables & bus
def test_state_table_is_pk_sk_on_demand_encrypted_and_recoverable(template: Tpl) -> None:
    p = props(template, "StateTable")
    assert [k["AttributeName"] for k in p["KeySchema"]] == ["pk", "sk"]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": KMS_KEY_REF}
    assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert p["DeletionProtectionEnabled"] == {"Fn::If": ["ProtectData", True, False]}


def test_idempotency_table_matches_the_powertools_persistence_layer(template: Tpl) -> None:
    p = props(template, "IdempotencyTable")
    assert p["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert p["SSESpecification"]["SSEType"] == "KMS"


def test_bus_is_stage_named_encrypted_and_archived(template: Tpl) -> None:
    assert props(template, "DocllmBus")["Name"] == {"Fn::Sub": "docllm-${Stage}"}
    assert props(template, "DocllmBus")["KmsKeyIdentifier"] == KMS_KEY_ARN
    (archive,) = resources_of(template, "AWS::Events::Archive").values()
    assert archive["Properties"]["SourceArn"] == {"Fn::GetAtt": ["DocllmBus", "Arn"]}
    assert "RetentionDays" in archive["Properties"]


# ------------------------------------------------------------------ routing
@pytest.mark.parametrize(
    ("fn", "code_dir", "queue", "batch", "max_receive", "rule", "bus", "pattern"),
    ROUTES,
    ids=[f"{r[0]}<-{r[5]}" for r in ROUTES],
)
def test_routing_row_is_wired_rule_to_queue_to_function(
    template: dict[str, Any],
    fn: str,
    code_dir: str,
    queue: str,
    batch: int,
    max_receive: int,
    rule: str,
    bus: str | None,
    pattern: dict[str, Any],
) -> None:
    r = props(template, rule)
    assert template["Resources"][rule]["Type"] == "AWS::Events::Rule"
    if bus is None:
        assert r.get("EventBusName", "default") == "default"
    else:
        assert r["EventBusName"] == {"Ref": bus}
    assert r["EventPattern"] == pattern
    assert [t["Arn"] for t in r["Targets"]] == [{"Fn::GetAtt": [queue, "Arn"]}]

    q = props(template, queue)
    assert q["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [f"{queue}DLQ", "Arn"]},
        "maxReceiveCount": max_receive,
    }

    f = props(template, fn)
    assert f["CodeUri"] == f"services/{code_dir}/"
    assert f["Handler"] == "app.handler"
    (event,) = f["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert event["Properties"]["BatchSize"] == batch
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


@pytest.mark.parametrize(
    ("group", "status", "routed"),
    [
        ("docllm-dev-tiny-s3", "Approved", True),
        ("docllm-dev-tiny-s3", "Rejected", True),
        ("docllm-prod-tiny-s3", "Approved", False),  # another deployment stage's group
        ("someone-elses-group", "Approved", False),
    ],
)
def test_model_package_state_changes_of_this_stages_groups_reach_the_gate(
    group: str, status: str, routed: bool
) -> None:
    (rule,) = [r for r in read_wiring(TEMPLATE).rules if r.name == "ModelPackageStateRule"]
    assert rule.bus == "default" and rule.targets == ("GateQueue",)  # SageMaker announces on the default bus
    event = {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "detail": {
            "ModelPackageGroupName": group,
            "ModelPackageArn": f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{group}/1",
            "ModelApprovalStatus": status,
        },
    }
    assert matches(rule.pattern, event) is routed


@pytest.mark.parametrize(("fn", "queue"), [(r[0], r[2]) for r in ROUTES])
def test_queue_visibility_is_at_least_six_function_timeouts(template: Tpl, fn: str, queue: str) -> None:
    timeout = props(template, fn).get("Timeout", template["Globals"]["Function"].get("Timeout", 3))
    assert props(template, queue)["VisibilityTimeout"] >= 6 * timeout


def test_our_bus_rules_only_route_events_that_have_a_contract(template: Tpl) -> None:
    known = {(c.SOURCE, c.DETAIL_TYPE) for c in CONTRACTS}
    for name, rule in resources_of(template, "AWS::Events::Rule").items():
        p = rule["Properties"]
        if p.get("EventBusName") != {"Ref": "DocllmBus"}:
            continue
        detail_types = p["EventPattern"]["detail-type"]
        # Each detail-type must exist under at least one of the rule's sources.
        for dt in detail_types:
            assert any((src, dt) in known for src in p["EventPattern"]["source"]), (name, dt)


def test_rules_target_only_sqs_queues_and_use_only_local_operators(template: Tpl) -> None:
    queues = set(resources_of(template, "AWS::SQS::Queue"))
    for name, rule in resources_of(template, "AWS::Events::Rule").items():
        assert set(pattern_operators(rule["Properties"]["EventPattern"])) <= PATTERN_OPERATORS, name
        if "Condition" in rule:
            continue  # AWS only: see test_aws_only_rules_do_not_exist_for_the_local_runtime
        for target in rule["Properties"]["Targets"]:
            arn = target["Arn"]["Fn::GetAtt"]
            assert arn[0] in queues and arn[1] == "Arn", name


def test_aws_only_rules_do_not_exist_for_the_local_runtime(template: Tpl) -> None:
    # The local runtime reads the template with the parameter defaults and skips a resource
    # whose condition is false; a rule with a non-queue target must be such a resource.
    conditional = {n for n, r in resources_of(template, "AWS::Events::Rule").items() if "Condition" in r}
    assert conditional == {"StageFailedNotifyRule"}
    assert template["Resources"]["StageFailedNotifyRule"]["Condition"] == "HasAlarmEmail"
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    local_rules = {r.name for r in read_wiring(TEMPLATE).rules}
    assert not conditional & local_rules
    assert {r[5] for r in ROUTES} | {"StageFailedRule"} <= local_rules


def test_routing_parts_use_only_intrinsics_the_local_runtime_resolves(template: Tpl) -> None:
    parts: list[Any] = [template["Globals"]]
    for _name, res in template["Resources"].items():
        if res["Type"] in ("AWS::Events::Rule", "AWS::SQS::Queue"):
            parts.append(res["Properties"])
        if res["Type"] == "AWS::Serverless::Function":
            parts.append(res["Properties"].get("Events", {}))
            parts.append(res["Properties"].get("Environment", {}))
    used = {name for part in parts for name in intrinsic_names(part)}
    assert used <= LOCAL_INTRINSICS, used - LOCAL_INTRINSICS


def test_every_queue_has_a_dlq_with_an_alarm_and_is_encrypted(template: Tpl) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    alarms = resources_of(template, "AWS::CloudWatch::Alarm").values()
    alarmed = {
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in alarms
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and a["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
        and a["Properties"]["Threshold"] == 0
    }
    for name, queue in queues.items():
        p = queue["Properties"]
        assert p.get("KmsMasterKeyId") == {"Ref": "DocllmKey"} or p.get("SqsManagedSseEnabled") is True, name
        if name.endswith("DLQ"):
            assert p["MessageRetentionPeriod"] == 14 * 24 * 3600, name
            assert name in alarmed, f"{name} has no messages-visible alarm"
        else:
            assert p["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [f"{name}DLQ", "Arn"]}, name
            assert "MessageRetentionPeriod" in p, name


@pytest.mark.parametrize("queue", sorted({r[2] for r in ROUTES}))
def test_queue_policy_lets_only_its_rules_send(template: Tpl, queue: str) -> None:
    rules = [{"Fn::GetAtt": [r[5], "Arn"]} for r in ROUTES if r[2] == queue]
    policies = [
        p["Properties"]
        for p in resources_of(template, "AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [{"Ref": queue}]
    ]
    assert len(policies) == 1
    allows = [st for st in policies[0]["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
    assert allows == [
        {
            "Sid": "AllowRuleToSend",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": [queue, "Arn"]},
            "Condition": {"ArnEquals": {"aws:SourceArn": rules[0] if len(rules) == 1 else rules}},
        }
    ]


# ---------------------------------------------------------------- functions
def test_every_function_is_traced_layered_and_logs_to_its_own_retained_group(template: Tpl) -> None:
    functions = resources_of(template, "AWS::Serverless::Function")
    assert set(functions) == FUNCTIONS
    groups = resources_of(template, "AWS::Logs::LogGroup")
    for name, fn in functions.items():
        p = fn["Properties"]
        assert p["Tracing"] == "Active", name
        assert p["Runtime"] == "python3.12" and p["Architectures"] == ["x86_64"], name
        assert p["Layers"] == [{"Ref": "DocllmLayer"}], name
        group_id = p["LoggingConfig"]["LogGroup"]["Ref"]
        group = groups[group_id]["Properties"]
        short = p["FunctionName"]["Fn::Sub"]
        assert group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/{short}"}, name
        assert "RetentionInDays" in group and group["KmsKeyId"] == KMS_KEY_ARN, name


def test_every_function_runs_as_its_own_role_without_managed_policies(template: Tpl) -> None:
    # With SAM's generated role, SAM attaches AWSLambdaSQSQueueExecutionRole (SQS on "*"),
    # AWSLambdaBasicExecutionRole and AWSXrayWriteOnlyAccess; an explicit role gets none of them
    # (scripts/check_sam_transform.py checks the transform's output says the same).
    roles = resources_of(template, "AWS::IAM::Role")
    for name in FUNCTIONS:
        p = props(template, name)
        assert p["Role"] == {"Fn::GetAtt": [f"{name}Role", "Arn"]}, name
        # SAM ignores Policies next to an explicit Role: none may be left to mislead.
        assert "Policies" not in p, name
        role = roles[f"{name}Role"]["Properties"]
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust == {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
        assert "ManagedPolicyArns" not in role and "PermissionsBoundary" not in role, name
        statements = function_statements(template, name)
        log_group = p["LoggingConfig"]["LogGroup"]["Ref"]
        assert by_sid(statements, "WriteOwnLogs")["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}, name
        assert set(as_list(by_sid(statements, "WriteOwnLogs")["Action"])) == {
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        }
        assert by_sid(statements, "UseDataKey")["Resource"] == KMS_KEY_ARN, name


def test_function_roles_never_grant_star_resources_beyond_what_aws_requires(template: Tpl) -> None:
    for name in FUNCTIONS:
        assert star_resource_violations(function_statements(template, name)) == [], name


@pytest.mark.parametrize(("fn", "queue"), sorted(QUEUE_OF.items()))
def test_queue_consumer_polls_only_its_queue_and_dead_letters_only_to_its_dlq(
    template: Tpl, fn: str, queue: str
) -> None:
    statements = function_statements(template, fn)
    sqs = {
        (st["Effect"], frozenset(as_list(st["Action"])), json.dumps(st["Resource"]), "Condition" in st)
        for st in statements
        if any(a.startswith("sqs:") for a in as_list(st["Action"]))
    }
    assert sqs == {
        ("Allow", frozenset(SQS_CONSUME), json.dumps({"Fn::GetAtt": [queue, "Arn"]}), False),
        ("Allow", frozenset({"sqs:SendMessage"}), json.dumps({"Fn::GetAtt": [f"{queue}DLQ", "Arn"]}), False),
    }
    # The handler dead-letters a permanent failure itself, at once, to this queue (its URL).
    assert props(template, fn)["Environment"]["Variables"]["DOCLLM_DEAD_LETTER_QUEUE"] == {"Ref": f"{queue}DLQ"}


def test_only_queue_consumers_get_a_dead_letter_queue_variable(template: Tpl) -> None:
    having = {n for n in FUNCTIONS if "DOCLLM_DEAD_LETTER_QUEUE" in env_of(template, n)}
    assert having == set(QUEUE_OF)
    assert "DOCLLM_DEAD_LETTER_QUEUE" not in template["Globals"]["Function"]["Environment"]["Variables"]


@pytest.mark.parametrize("fn", sorted(FUNCTIONS))
def test_each_function_puts_events_only_with_the_sources_it_publishes(template: Tpl, fn: str) -> None:
    puts = statements_with(function_statements(template, fn), "events:PutEvents")
    if not PUBLISHED_SOURCES[fn]:
        assert puts == []
        return
    (put,) = puts
    assert put["Action"] == "events:PutEvents"
    assert put["Resource"] == {"Fn::GetAtt": ["DocllmBus", "Arn"]}
    # events:source is multivalued (one value per entry): every entry's source must be listed,
    # and a request without the key (no entries) grants nothing.
    assert put["Condition"] == {
        "ForAllValues:StringEquals": {"events:source": sorted(PUBLISHED_SOURCES[fn])},
        "Null": {"events:source": "false"},
    }


def test_the_call_follower_finds_events_across_modules_and_the_completion_dispatch() -> None:
    # jobs.launch -> jobs._fail -> StageFailed; handle_job_state -> <stage>.complete_job -> ...
    assert contracts_reached("tokenizer", "handle_dataset_built") >= {"TokenizerTrained", "StageFailed"}
    assert "ModelTrained" in contracts_reached("jobs", "handle_job_state")
    # gate._apply: event_type = ModelApproved if ... else ModelRejected; event_type(...)
    assert contracts_reached("gate", "handle_gate_event") >= {"ModelApproved", "ModelRejected"}
    # rollback: from docllm.service_layer import deploy as deployer; deployer.deploy(...)
    assert "ModelDeployed" in contracts_reached("rollback", "handle_rollback_event")


@pytest.mark.parametrize("fn", sorted(QUEUE_OF))
def test_published_sources_match_what_the_handler_can_construct(fn: str) -> None:
    code_dir = next(r[1] for r in ROUTES if r[0] == fn)
    constructed = {CONTRACT_NAMES[n].SOURCE for n in contracts_reached(*handler_entry(code_dir))}
    # lambda_support announces a permanently failed input that carries a request_id with "Stage Failed".
    inputs = {t for r in ROUTES if r[0] == fn for t in r[7].get("detail-type", [])}
    if any("request_id" in c.model_fields for c in CONTRACTS if c.DETAIL_TYPE in inputs):
        constructed.add(StageFailed.SOURCE)
    assert constructed == PUBLISHED_SOURCES[fn]


def test_the_outbox_relay_may_republish_what_the_functions_commit_and_never_a_review() -> None:
    functions = {s for f, sources in PUBLISHED_SOURCES.items() if f != "OutboxRelayFunction" for s in sources}
    assert functions <= ALL_SOURCES
    assert PUBLISHED_SOURCES["OutboxRelayFunction"] == functions
    # Reviews are the local CLI's: no function, and so no outbox entry, carries one.
    assert ALL_SOURCES - functions == {"docllm.review"}


@pytest.mark.parametrize(("role", "vpc_policy"), [("SageMakerJobRole", "SageMakerJobVpcPolicy"),
                                                  ("EvaluateJobRole", "EvaluateJobVpcPolicy"),
                                                  ("EndpointRole", "EndpointVpcPolicy")])  # fmt: skip
def test_job_role_uses_star_only_where_aws_requires_it(template: Tpl, role: str, vpc_policy: str) -> None:
    (trust,) = props(template, role)["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    vpc = template["Resources"][vpc_policy]
    assert vpc["Condition"] == "HasVpc" and vpc["Properties"]["RoleName"] == {"Ref": role}
    statements = role_statements(template, role) + vpc["Properties"]["PolicyDocument"]["Statement"]
    assert star_resource_violations(statements) == []


def s3_grants(template: Tpl, role: str, action: str) -> set[str]:
    """The ``Fn::Sub`` / ``GetAtt`` resources ``role`` is allowed ``action`` on, as text."""
    found: set[str] = set()
    for st in statements_with(role_statements(template, role), action):
        for r in as_list(st["Resource"]):
            found.add(sub_text(r) if "Fn::Sub" in r else ".".join(r["Fn::GetAtt"]))
    return found


def list_prefixes(template: Tpl, role: str, bucket: str) -> set[str]:
    return {
        p
        for st in statements_with(role_statements(template, role), "s3:ListBucket")
        if st["Resource"] == {"Fn::GetAtt": [bucket, "Arn"]}
        for p in st["Condition"]["StringLike"]["s3:prefix"]
    }


def test_evaluation_jobs_run_as_a_role_that_writes_only_evaluations(template: Tpl) -> None:
    # Evaluation jobs render user-supplied benchmark templates: they may not overwrite the weights
    # they evaluate, nor shards or tokenizers.
    art, raw = "${ArtifactBucket.Arn}/", "${RawBucket.Arn}/"
    assert s3_grants(template, "EvaluateJobRole", "s3:PutObject") == {art + "evaluations/*"}
    assert s3_grants(template, "EvaluateJobRole", "s3:AbortMultipartUpload") == {art + "evaluations/*"}
    assert s3_grants(template, "EvaluateJobRole", "s3:GetObject") == {
        art + "models/*", art + "datasets/*", art + "evaluations/*", raw + "benchmarks/*"}  # fmt: skip
    assert list_prefixes(template, "EvaluateJobRole", "ArtifactBucket") == {"models/*", "datasets/*", "evaluations/*"}
    assert list_prefixes(template, "EvaluateJobRole", "RawBucket") == {"benchmarks/*"}
    s3_actions = {a for st in role_statements(template, "EvaluateJobRole") for a in as_list(st["Action"])
                  if a.startswith("s3:")}  # fmt: skip
    assert s3_actions == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
                          "s3:AbortMultipartUpload"}  # fmt: skip
    # The same KMS, ECR, log and metric grants as the other jobs.
    shared = ("UseDataKey", "GrantKeyToSageMakerResources", "PullJobImages", "EcrLogin", "JobLogs", "JobMetrics")
    for sid in shared:
        assert by_sid(role_statements(template, "EvaluateJobRole"), sid) == by_sid(
            role_statements(template, "SageMakerJobRole"), sid
        ), sid


def test_the_evaluate_function_writes_only_bedrock_reports_and_the_gate_reads_customization_data(
    template: Tpl,
) -> None:
    # A Bedrock custom model is evaluated in the function (from Bedrock's metrics files): it writes the
    # report under evaluations/ only; the gate hashes the JSONL Bedrock read for the manifest.
    art = "${ArtifactBucket.Arn}/"
    assert s3_grants(template, "EvaluateFunctionRole", "s3:PutObject") == {art + "evaluations/*"}
    assert art + "customizations/*" in s3_grants(template, "GateFunctionRole", "s3:GetObject")
    assert s3_grants(template, "GateFunctionRole", "s3:PutObject") == {"${ComplianceBucket.Arn}/*"}


def test_the_training_job_role_has_no_evaluation_grants(template: Tpl) -> None:
    art = "${ArtifactBucket.Arn}/"
    writes = s3_grants(template, "SageMakerJobRole", "s3:PutObject")
    assert writes == {art + p for p in ("tokenizers/*", "shards/*", "models/*", "checkpoints/*", "jobs/*")}
    reads = s3_grants(template, "SageMakerJobRole", "s3:GetObject")
    assert reads == {art + p for p in ("datasets/*", "shards/*", "tokenizers/*", "checkpoints/*", "jobs/*")}
    assert list_prefixes(template, "SageMakerJobRole", "RawBucket") == set()


BEDROCK_CUSTOMIZATION_PASS = {
    "Sid": "PassCustomizationRoleToBedrockOnly",
    "Effect": "Allow",
    "Action": "iam:PassRole",
    "Resource": {"Fn::GetAtt": ["BedrockCustomizationRole", "Arn"]},
    "Condition": {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
}


@pytest.mark.parametrize("fn", sorted(JOB_LAUNCHERS))
def test_job_launchers_may_only_pass_their_jobs_role_to_sagemaker(template: Tpl, fn: str) -> None:
    role, variable = JOB_ROLE_OF.get(fn, DEFAULT_JOB_ROLE)
    statements = function_statements(template, fn)
    passes = statements_with(statements, "iam:PassRole")
    (passrole,) = [st for st in passes if st.get("Sid") == "PassJobRoleToSageMakerOnly"]
    # The train stage also launches Bedrock customization jobs: it passes Bedrock's role, to Bedrock only.
    others = [st for st in passes if st is not passrole]
    assert others == ([BEDROCK_CUSTOMIZATION_PASS] if fn == "TrainFunction" else [])
    assert passrole["Resource"] == {"Fn::GetAtt": [role, "Arn"]}
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    env = env_of(template, fn)
    assert set(env) >= JOB_ENV
    # The function is told only the role it may pass: no fallback to one it cannot.
    assert env[variable] == {"Fn::GetAtt": [role, "Arn"]}
    roles = {k for k in env if k.startswith("DOCLLM_SAGEMAKER_") and k.endswith("ROLE_ARN")}
    assert roles == {variable}, fn


@pytest.mark.parametrize("fn", sorted(JOB_LAUNCHERS))
def test_job_launchers_create_jobs_only_on_allowed_instances_with_our_key_and_network(template: Tpl, fn: str) -> None:
    creates = {
        st["Sid"]: st for st in statements_with(function_statements(template, fn), "sagemaker:CreateTrainingJob")
    }
    assert set(creates) == {"CreateJobsOnVolumeInstances", "CreateJobsOnNvmeInstances"}
    # (Without a VPC the keys must be absent, see "Null"; the placeholder keeps the value list non-empty.)
    network = {
        "sagemaker:VpcSubnets": {"Fn::If": ["HasVpc", {"Fn::Split": [",", {"Ref": "SubnetIds"}]}, ["no-vpc"]]},
        "sagemaker:VpcSecurityGroupIds": {
            "Fn::If": ["HasVpc", {"Fn::Split": [",", {"Ref": "SecurityGroupIds"}]}, ["no-vpc"]]
        },
    }
    present = {
        "sagemaker:InstanceTypes": "false",
        # In VPC mode the job must name our subnets/groups; without a VPC it must name none.
        "sagemaker:VpcSubnets": {"Fn::If": ["HasVpc", "false", "true"]},
        "sagemaker:VpcSecurityGroupIds": {"Fn::If": ["HasVpc", "false", "true"]},
    }
    job_arn = JOB_ARN_OF.get(fn, JOB_ARN)
    for sid, types, keys in [
        ("CreateJobsOnVolumeInstances", "JobInstanceTypes", {"sagemaker:OutputKmsKey", "sagemaker:VolumeKmsKey"}),
        # SageMaker refuses a volume key on local-NVMe instances (the adapter leaves it out there).
        ("CreateJobsOnNvmeInstances", "JobNvmeInstanceTypes", {"sagemaker:OutputKmsKey"}),
    ]:
        st = creates[sid]
        assert st["Action"] == "sagemaker:CreateTrainingJob"
        assert st["Resource"] == {"Fn::Sub": job_arn}
        assert st["Condition"] == {
            "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": {"Ref": types}, **network},
            "ArnEquals": dict.fromkeys(sorted(keys), KMS_KEY_ARN),
            "Null": present,
        }, sid
    (tagging,) = statements_with(function_statements(template, fn), "sagemaker:AddTags")
    assert set(as_list(tagging["Action"])) == {
        "sagemaker:AddTags",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:ListTags",
    }
    assert tagging["Resource"] == {"Fn::Sub": job_arn} and "Condition" not in tagging


def test_allowed_instance_types_cover_every_job_the_code_launches(template: Tpl) -> None:
    asked = {f.instance_type for f in load_families().values()}
    # The job specs live with the stages that launch them (service_layer/<stage>.py).
    for module in (REPO / "shared/docllm/service_layer").glob("*.py"):
        asked |= set(re.findall(r'instance_type="(ml\.[\w.]+)"', module.read_text()))
    asked.add(JobSpec.model_fields["instance_type"].default)  # the shards job's
    volume = set(template["Parameters"]["JobInstanceTypes"]["Default"].split(","))
    nvme = set(template["Parameters"]["JobNvmeInstanceTypes"]["Default"].split(","))
    assert {t for t in asked if not has_local_storage(t)} <= volume
    assert {t for t in asked if has_local_storage(t)} <= nvme
    assert not any(has_local_storage(t) for t in volume) and all(has_local_storage(t) for t in nvme)
    assert template["Parameters"]["JobInstanceTypes"]["Type"] == "CommaDelimitedList"


def test_only_launchers_can_create_training_jobs_and_all_sagemaker_access_is_stage_scoped(template: Tpl) -> None:
    creators = {
        n for n in FUNCTIONS if statements_with(function_statements(template, n), "sagemaker:CreateTrainingJob")
    }
    assert creators == JOB_LAUNCHERS
    registry_actions = REGISTRY_READ | REGISTRY_WRITE
    registry_only = registry_actions - {"sagemaker:AddTags", "sagemaker:ListTags"}
    for name in FUNCTIONS:
        for st in function_statements(template, name):
            actions = {a for a in as_list(st["Action"]) if a.startswith("sagemaker:")}
            if not actions:
                continue
            if actions == {"sagemaker:ListModelPackageGroups"}:
                assert st["Resource"] == "*", name  # no resource-level permissions (AWS requires "*")
            elif name in SERVING_FUNCTIONS and not actions & registry_only:
                # Models, endpoint configurations and endpoints of this stage, nothing else.
                assert as_list(st["Resource"]), (name, st.get("Sid"))
                assert all(r in SERVING_ARNS.values() for r in as_list(st["Resource"])), (name, st.get("Sid"))
            elif actions & registry_only:
                # Model registry statements: this stage's groups (and their packages), nothing else.
                assert actions <= registry_actions, (name, st.get("Sid"))
                assert st["Resource"] in (REGISTRY_ARNS, REGISTRY_ARNS[0], REGISTRY_ARNS[1]), (name, st.get("Sid"))
            else:
                assert st["Resource"] == {"Fn::Sub": JOB_ARN_OF.get(name, JOB_ARN)}, (name, st.get("Sid"))


def test_only_the_gate_changes_the_registry_and_the_evaluator_only_reads_it(template: Tpl) -> None:
    writers = {
        n
        for n in FUNCTIONS
        for st in function_statements(template, n)
        if set(as_list(st["Action"])) & (REGISTRY_WRITE - {"sagemaker:AddTags"})
    }
    assert writers == {"GateFunction", "RollbackFunction"}
    (gate,) = [
        st
        for st in function_statements(template, "GateFunction")
        if "sagemaker:CreateModelPackage" in as_list(st["Action"])
    ]
    # CreateModelPackage is authorised against the package and its group: both are listed.
    assert set(gate["Action"]) == REGISTRY_READ | REGISTRY_WRITE and gate["Resource"] == REGISTRY_ARNS
    assert "Condition" not in gate
    # The evaluator reads the champion alias (the group's tags) for the report's comparison.
    (reader,) = statements_with(
        function_statements(template, "EvaluateFunction"), "sagemaker:DescribeModelPackageGroup"
    )
    assert set(as_list(reader["Action"])) == {"sagemaker:DescribeModelPackageGroup", "sagemaker:ListTags"}
    assert reader["Resource"] == REGISTRY_ARNS[0]
    # Listing the groups (the registry finds a version's group so) is the one unscoped call: the gate's.
    listers = {
        n for n in FUNCTIONS if statements_with(function_statements(template, n), "sagemaker:ListModelPackageGroups")
    }
    assert listers == {"GateFunction", "DeployFunction", "RollbackFunction"}
    # The deployer asks the registry whether a version is Approved (it trusts no event): read only.
    # So does the rollback handler, looking for the last known good version.
    for name in ("DeployFunction", "RollbackFunction"):
        (reads,) = statements_with(function_statements(template, name), "sagemaker:DescribeModelPackage")
        assert set(reads["Action"]) == REGISTRY_READ and reads["Resource"] == REGISTRY_ARNS, name
    # The one change the rollback handler makes: a package's status (RolledBack), never a group's
    # tags (the champion alias is the gate's) and never a new package.
    rollback_writes = [
        st
        for st in function_statements(template, "RollbackFunction")
        if set(as_list(st["Action"])) & (REGISTRY_WRITE - {"sagemaker:AddTags"})
    ]
    assert rollback_writes == [
        {
            "Sid": "MarkRolledBackPackages",
            "Effect": "Allow",
            "Action": "sagemaker:UpdateModelPackage",
            "Resource": REGISTRY_ARNS[1],
        }
    ]
    # The groups are the adapter's (one per family, made on first use), not the stack's.
    assert not resources_of(template, "AWS::SageMaker::ModelPackageGroup")


def test_stage_reaches_the_code_and_every_name_the_template_sets(template: Tpl) -> None:
    # Job names are docllm-<stage>-..., which the code builds from DOCLLM_STAGE.
    assert template["Globals"]["Function"]["Environment"]["Variables"]["DOCLLM_STAGE"] == {"Ref": "Stage"}
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    rules = resources_of(template, "AWS::Events::Rule")
    for kind, key in [(alarms, "AlarmName"), (rules, "Name")]:
        named = {n: r["Properties"].get(key) for n, r in kind.items()}
        for name, value in named.items():
            assert value is not None and sub_text(value).startswith(STAGE_PREFIX), name
        assert len({sub_text(v) for v in named.values()}) == len(named), key


# --------------------------------------------------------------------- API
def test_http_api_requires_iam_auth_logs_access_and_throttles(template: Tpl) -> None:
    api = props(template, "DocllmHttpApi")
    assert template["Resources"]["DocllmHttpApi"]["Type"] == "AWS::Serverless::HttpApi"
    assert api["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    assert api["Auth"]["EnableIamAuthorizer"] is True
    assert api["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    json.loads(api["AccessLogSettings"]["Format"])
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(api["DefaultRouteSettings"])
    assert "CorsConfiguration" not in api


def test_api_function_serves_exactly_the_documented_routes(template: Tpl) -> None:
    events = props(template, "ApiFunction")["Events"].values()
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events if e["Type"] == "HttpApi"}
    assert routes == {
        ("GET", "/v1/search"),
        ("GET", "/v1/documents"),
        ("GET", "/v1/status"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/ask"),
        # The dashboard's pages and forms (docs/dashboard.md).
        ("GET", "/dashboard"),
        ("GET", "/dashboard/{proxy+}"),
        ("POST", "/dashboard/{proxy+}"),
    }
    for e in events:
        assert e["Properties"]["ApiId"] == {"Ref": "DocllmHttpApi"}
        # No per-route override may switch authentication off.
        assert "Auth" not in e["Properties"]


# ------------------------------------------------------------- deploy & serving
def test_the_deployer_passes_only_the_serving_roles_each_to_its_service(template: Tpl) -> None:
    passes = {
        (st["Resource"]["Fn::GetAtt"][0], st["Condition"]["StringEquals"]["iam:PassedToService"])
        for st in statements_with(function_statements(template, "DeployFunction"), "iam:PassRole")
    }
    assert passes == {("EndpointRole", "sagemaker.amazonaws.com"), ("BedrockImportRole", "bedrock.amazonaws.com")}
    env = env_of(template, "DeployFunction")
    assert env["DOCLLM_ENDPOINT_ROLE_ARN"] == {"Fn::GetAtt": ["EndpointRole", "Arn"]}
    assert env["DOCLLM_BEDROCK_IMPORT_ROLE_ARN"] == {"Fn::GetAtt": ["BedrockImportRole", "Arn"]}
    # No other function may pass them.
    for name in FUNCTIONS - {"DeployFunction"}:
        for st in statements_with(function_statements(template, name), "iam:PassRole"):
            assert st["Resource"]["Fn::GetAtt"][0] not in {"EndpointRole", "BedrockImportRole"}, name


def test_the_deployer_creates_only_isolated_models_and_configs_on_the_allowed_instance_type(template: Tpl) -> None:
    statements = function_statements(template, "DeployFunction")
    model = by_sid(statements, "CreateIsolatedModels")
    assert model["Action"] == "sagemaker:CreateModel" and model["Resource"] == SERVING_ARNS["model"]
    assert model["Condition"]["Bool"] == {"sagemaker:NetworkIsolation": "true"}
    assert model["Condition"]["Null"] == {
        "sagemaker:VpcSubnets": {"Fn::If": ["HasVpc", "false", "true"]},
        "sagemaker:VpcSecurityGroupIds": {"Fn::If": ["HasVpc", "false", "true"]},
    }
    config = by_sid(statements, "CreateEndpointConfigsOnAllowedInstances")
    assert config["Resource"] == SERVING_ARNS["endpoint-config"]
    assert config["Condition"] == {
        "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": [{"Ref": "EndpointInstanceType"}]},
        "Null": {"sagemaker:InstanceTypes": "false"},
    }
    # The type the code asks for is the one the role allows.
    assert env_of(template, "DeployFunction")["DOCLLM_ENDPOINT_INSTANCE_TYPE"] == {"Ref": "EndpointInstanceType"}
    endpoint = by_sid(statements, "CreateAndUpdateOwnEndpoints")
    assert endpoint["Resource"] == [SERVING_ARNS["endpoint"], SERVING_ARNS["endpoint-config"]]
    # Bedrock: the account's import jobs and imported models only.
    bedrock = by_sid(statements, "ImportModelsIntoBedrock")
    assert bedrock["Resource"] == [
        {"Fn::Sub": BEDROCK_ARN + "model-import-job/*"},
        {"Fn::Sub": BEDROCK_ARN + "imported-model/*"},
    ]
    slr = by_sid(statements, "CreateAutoscalingServiceLinkedRole")
    assert slr["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }
    # The deployer reads exports (models/), never writes the artifact bucket.
    assert not statements_with(statements, "s3:PutObject")


def test_the_deployer_is_configured_from_parameters(template: Tpl) -> None:
    params = template["Parameters"]
    assert params["DeployTarget"]["Default"] == "sagemaker"
    assert set(params["DeployTarget"]["AllowedValues"]) == {"sagemaker", "bedrock", "none"}
    assert params["EndpointInstanceType"]["Default"] == "ml.g5.xlarge"
    env = env_of(template, "DeployFunction")
    assert env["DOCLLM_DEPLOY_TARGET"] == {"Ref": "DeployTarget"}
    assert env["DOCLLM_SERVE_IMAGE"] == {"Ref": "ServeImageUri"}
    assert env["DOCLLM_ENDPOINT_ALARMS"] == {"Ref": "EndpointAlarmNames"}
    # Models (and imports) in the stage's subnets: the same ones the CreateModel condition names.
    assert env["DOCLLM_SUBNET_IDS"] == {"Ref": "SubnetIds"}
    assert env["DOCLLM_SECURITY_GROUP_IDS"] == {"Ref": "SecurityGroupIds"}
    # The API answers with the deployer's target.
    assert env_of(template, "ApiFunction")["DOCLLM_DEPLOY_TARGET"] == {"Ref": "DeployTarget"}


def test_endpoint_alarm_names_are_documented_for_operators(template: Tpl) -> None:
    # CloudFormation cannot know the families (data, not stack resources), and alarms cannot
    # watch a SEARCH over endpoints: the operator names per-endpoint alarms (docs/deployment.md).
    assert template["Parameters"]["EndpointAlarmNames"]["Default"] == ""
    doc = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert "EndpointAlarmNames" in doc and "Invocation5XXErrors" in doc and "ModelLatency" in doc


def test_endpoints_read_only_models_and_write_only_their_capture(template: Tpl) -> None:
    art = "${ArtifactBucket.Arn}/"
    assert s3_grants(template, "EndpointRole", "s3:GetObject") == {art + "models/*"}
    assert s3_grants(template, "EndpointRole", "s3:PutObject") == {art + "endpoint-capture/*"}
    assert list_prefixes(template, "EndpointRole", "ArtifactBucket") == {"models/*"}
    assert s3_grants(template, "EndpointRole", "s3:DeleteObject") == set()
    # The same KMS, ECR and metric grants as the jobs; logs of this stage's endpoints only.
    for sid in ("UseDataKey", "GrantKeyToSageMakerResources", "PullJobImages", "EcrLogin", "JobMetrics"):
        assert by_sid(role_statements(template, "EndpointRole"), sid) == by_sid(
            role_statements(template, "SageMakerJobRole"), sid
        ), sid
    logs = by_sid(role_statements(template, "EndpointRole"), "EndpointLogs")
    assert sub_text(logs["Resource"]).endswith("log-group:/aws/sagemaker/Endpoints/docllm-${Stage}-*")
    # The code captures to this prefix (adapters/aws/deployed.py).
    deployed = (REPO / "shared/docllm/adapters/aws/deployed.py").read_text(encoding="utf-8")
    assert "/endpoint-capture/" in deployed


def test_bedrock_imports_read_only_models_for_this_accounts_jobs(template: Tpl) -> None:
    (trust,) = props(template, "BedrockImportRole")["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert trust["Condition"]["ArnLike"] == {"aws:SourceArn": {"Fn::Sub": BEDROCK_ARN + "model-import-job/*"}}
    statements = role_statements(template, "BedrockImportRole")
    assert {a for st in statements for a in as_list(st["Action"])} == {"s3:ListBucket", "s3:GetObject", "kms:Decrypt"}
    assert s3_grants(template, "BedrockImportRole", "s3:GetObject") == {"${ArtifactBucket.Arn}/models/*"}
    assert list_prefixes(template, "BedrockImportRole", "ArtifactBucket") == {"models/*"}
    assert by_sid(statements, "DecryptModels")["Resource"] == KMS_KEY_ARN


def test_the_api_may_invoke_only_this_stages_endpoints_and_imported_models(template: Tpl) -> None:
    statements = function_statements(template, "ApiFunction")
    endpoints = by_sid(statements, "InvokeOwnEndpoints")
    assert set(endpoints["Action"]) == {"sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"}
    assert endpoints["Resource"] == SERVING_ARNS["endpoint"]
    models = by_sid(statements, "InvokeImportedModels")
    assert set(models["Action"]) == {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}
    assert models["Resource"] == {"Fn::Sub": BEDROCK_ARN + "imported-model/*"}
    invokers = {n for n in FUNCTIONS if statements_with(function_statements(template, n), "sagemaker:InvokeEndpoint")}
    assert invokers == {"ApiFunction", "CanaryFunction"}
    # The canary asks what the API asks, of the same models.
    canary = function_statements(template, "CanaryFunction")
    assert by_sid(canary, "InvokeOwnEndpoints") == endpoints
    assert by_sid(canary, "InvokeImportedModels") == models
    # The deployer never answers; the API never deploys.
    assert not statements_with(statements, "sagemaker:CreateEndpoint")


def test_ask_has_its_own_lower_throttle(template: Tpl) -> None:
    (ask,) = [e for e in props(template, "ApiFunction")["Events"].values() if e["Properties"]["Path"] == "/v1/ask"]
    assert ask["Properties"]["RouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "AskThrottleRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "AskThrottleBurstLimit"},
    }
    params = template["Parameters"]
    assert params["AskThrottleRateLimit"]["Default"] < params["ApiThrottleRateLimit"]["Default"]
    assert params["AskThrottleBurstLimit"]["Default"] < params["ApiThrottleBurstLimit"]["Default"]


# ------------------------------------------------------------------ search
def test_search_collection_uses_a_customer_key(template: Tpl) -> None:
    assert props(template, "SearchCollection")["Type"] == "SEARCH"
    assert props(template, "SearchCollection")["Name"] == {"Fn::Sub": "docllm-${Stage}"}
    enc = props(template, "SearchEncryptionPolicy")
    assert enc["Type"] == "encryption"
    text = enc["Policy"]["Fn::Sub"].replace("${DocllmKey.Arn}", "arn").replace("${Stage}", "dev")
    policy = json.loads(text)
    assert policy["AWSOwnedKey"] is False and policy["KmsARN"] == "arn"
    assert policy["Rules"][0]["Resource"] == ["collection/docllm-dev"]


def test_network_policy_never_opens_the_dashboard_or_skips_iam(template: Tpl) -> None:
    choice = props(template, "SearchNetworkPolicy")["Policy"]["Fn::If"]
    assert choice[0] == "SearchInVpc"
    for branch in choice[1:]:
        text = branch["Fn::Sub"].replace("${Stage}", "dev").replace("${SearchVpcEndpoint}", "vpce-1")
        for rule_set in json.loads(text):
            assert {r["ResourceType"] for r in rule_set["Rules"]} == {"collection"}


def test_search_data_access_splits_the_indexer_from_the_read_only_api(template: Tpl) -> None:
    text = props(template, "SearchDataAccessPolicy")["Policy"]["Fn::Sub"]
    text = (
        text.replace("${Stage}", "dev")
        .replace("${IndexFunctionRole.Arn}", "index-role")
        .replace("${ApiFunctionRole.Arn}", "api-role")
        .replace("${CanaryFunctionRole.Arn}", "canary-role")
    )
    entries = json.loads(text)
    assert all(len(e["Principal"]) == 1 for e in entries)
    grants = {
        e["Principal"][0]: {(r["ResourceType"], tuple(r["Resource"])): set(r["Permission"]) for r in e["Rules"]}
        for e in entries
    }
    assert grants == {
        # The adapter writes the index template and creates/reads the alias: collection items.
        "index-role": {
            ("index", ("index/docllm-dev/*",)): {
                "aoss:ReadDocument",
                "aoss:WriteDocument",
                "aoss:CreateIndex",
                "aoss:UpdateIndex",
                "aoss:DescribeIndex",
            },
            ("collection", ("collection/docllm-dev",)): {
                "aoss:CreateCollectionItems",
                "aoss:DescribeCollectionItems",
                "aoss:UpdateCollectionItems",
            },
        },
        # Searches only: never a template, alias, mapping or index write.
        "api-role": {("index", ("index/docllm-dev/*",)): {"aoss:ReadDocument", "aoss:DescribeIndex"}},
        # The canary answers through the same path: the same read-only grant.
        "canary-role": {("index", ("index/docllm-dev/*",)): {"aoss:ReadDocument", "aoss:DescribeIndex"}},
    }
    callers = {n for n in FUNCTIONS if statements_with(function_statements(template, n), "aoss:APIAccessAll")}
    assert callers == {"IndexFunction", "ApiFunction", "CanaryFunction"}
    for name in callers:
        (st,) = statements_with(function_statements(template, name), "aoss:APIAccessAll")
        assert st["Resource"] == {"Fn::GetAtt": ["SearchCollection", "Arn"]}


@pytest.mark.parametrize("fn", ["IndexFunction", "ApiFunction", "CanaryFunction"])
def test_search_clients_get_network_interface_permissions_only_in_vpc_mode(template: Tpl, fn: str) -> None:
    conditional = [p for p in props(template, f"{fn}Role")["Policies"] if "Fn::If" in p]
    (policy,) = conditional
    condition, yes, no = policy["Fn::If"]
    assert condition == "SearchInVpc" and no == {"Ref": "AWS::NoValue"}
    (st,) = yes["PolicyDocument"]["Statement"]
    assert "ec2:CreateNetworkInterface" in st["Action"]
    assert props(template, fn)["VpcConfig"]["Fn::If"][0] == "SearchInVpc"


# ------------------------------------------------------------------ layer & outputs
def test_layer_builds_from_shared_with_the_python_build_method(template: Tpl) -> None:
    layer = template["Resources"]["DocllmLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "shared/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    # sam build looks for exactly this interpreter; the script must find and check for it.
    script = (REPO / "scripts" / "sam-check.sh").read_text(encoding="utf-8")
    assert 'PY_VERSION="3.12"' in script


def test_layer_requirements_leave_out_the_runtime_sdk_and_torch() -> None:
    lines = (TEMPLATE.parent / "shared" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    names = {
        line.split("==")[0].split("[")[0].strip().lower() for line in lines if line.strip() and not line.startswith("#")
    }
    assert {"pydantic", "aws-lambda-powertools", "selectolax", "pypdfium2", "opensearch-py"} <= names
    assert not names & {"boto3", "botocore", "torch", "sentencepiece", "transformers"}


def test_outputs_expose_every_resource_cloud_tests_look_up(template: Tpl) -> None:
    referenced = {
        ref
        for out in template["Outputs"].values()
        for ref in [out["Value"].get("Ref"), (out["Value"].get("Fn::GetAtt") or [None])[0]]
        if ref
    }
    wanted = set(resources_of(template, "AWS::S3::Bucket")) | set(resources_of(template, "AWS::SQS::Queue"))
    wanted |= {"StateTable", "IdempotencyTable", "DocllmBus", "SearchCollection", "SageMakerJobRole", "EvaluateJobRole"}
    wanted |= {"EndpointRole", "BedrockImportRole"}
    assert wanted <= referenced, wanted - referenced
    assert "DocllmHttpApi" in template["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]


# ------------------------------------------------------------- outbox relay
def test_outbox_relay_reads_only_outbox_inserts_from_the_state_table_stream(template: Tpl) -> None:
    state = props(template, "StateTable")
    assert state["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    # The filter names the table's hash key.
    assert [k["AttributeName"] for k in state["KeySchema"] if k["KeyType"] == "HASH"] == ["pk"]
    relay = props(template, "OutboxRelayFunction")
    assert {e["Type"] for e in relay["Events"].values()} == {"DynamoDB", "Schedule"}
    event = relay["Events"]["Outbox"]
    p = event["Properties"]
    assert p["Stream"] == {"Fn::GetAtt": ["StateTable", "StreamArn"]}
    (flt,) = p["FilterCriteria"]["Filters"]
    assert json.loads(flt["Pattern"]) == OUTBOX_FILTER
    assert p["BatchSize"] == 10 and p["BisectBatchOnFunctionError"] is True
    assert p["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert p["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": ["OutboxRelayDLQ", "Arn"]}}}
    assert p["StartingPosition"] == "TRIM_HORIZON"  # entries written before the mapping existed too
    # The sweep publishes what the stream relay gave up on (those entries stay in the outbox).
    assert relay["Events"]["Sweep"]["Properties"]["Schedule"].startswith("rate(")


def test_outbox_relay_handler_is_the_function_the_code_defines(template: Tpl) -> None:
    p = props(template, "OutboxRelayFunction")
    assert p["CodeUri"] == "services/outbox/"
    module, _, attr = p["Handler"].rpartition(".")
    tree = ast.parse((REPO / "services" / "outbox" / f"{module}.py").read_text(encoding="utf-8"))
    assert attr in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_outbox_relay_may_touch_only_outbox_entries_its_stream_and_its_dlq(template: Tpl) -> None:
    statements = function_statements(template, "OutboxRelayFunction")
    stream = by_sid(statements, "ReadStateTableStream")
    assert set(as_list(stream["Action"])) == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
    }
    assert stream["Resource"] == {"Fn::GetAtt": ["StateTable", "StreamArn"]}
    assert by_sid(statements, "ListStreams") == {
        "Sid": "ListStreams",
        "Effect": "Allow",
        "Action": "dynamodb:ListStreams",
        "Resource": "*",
    }
    entries = by_sid(statements, "OutboxEntriesOnly")
    assert set(as_list(entries["Action"])) == {"dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:Query"}
    assert entries["Resource"] == {"Fn::GetAtt": ["StateTable", "Arn"]}
    assert entries["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["outbox"]}}
    table_statements = [st for st in statements if any(a.startswith("dynamodb:") for a in as_list(st["Action"]))]
    assert len(table_statements) == 3
    sqs = [st for st in statements if any(a.startswith("sqs:") for a in as_list(st["Action"]))]
    assert sqs == [by_sid(statements, "OnFailureDestination")]
    assert sqs[0]["Action"] == "sqs:SendMessage" and sqs[0]["Resource"] == {"Fn::GetAtt": ["OutboxRelayDLQ", "Arn"]}


def test_the_local_runtime_loads_the_relay_without_a_source_it_cannot_run() -> None:
    wiring = read_wiring(TEMPLATE)
    relay = wiring.functions["OutboxRelayFunction"]
    assert relay.sqs_sources == () and relay.http_routes == ()
    assert "OutboxRelayDLQ" in wiring.queues  # exists locally too, and stays empty


# ------------------------------------------------------------------ alarms
def test_every_queue_has_an_age_alarm_with_the_threshold_of_its_kind(template: Tpl) -> None:
    queues = set(resources_of(template, "AWS::SQS::Queue"))
    aged = alarms_on(template, "ApproximateAgeOfOldestMessage", "QueueName")
    assert set(aged) == queues
    consumed = set(QUEUE_OF.values())
    for queue, alarm in aged.items():
        # Consumed queues: a stalled consumer. DLQs and the Stage Failed inbox: near expiry.
        wanted = "QueueAgeAlarmSeconds" if queue in consumed else "DeadLetterAgeAlarmSeconds"
        assert alarm["Threshold"] == {"Ref": wanted}, queue
        assert alarm["Statistic"] == "Maximum" and alarm["ComparisonOperator"] == "GreaterThanThreshold", queue
    assert template["Parameters"]["DeadLetterAgeAlarmSeconds"]["MaxValue"] < 14 * 24 * 3600


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_has_errors_and_throttles_alarms(template: Tpl, metric: str) -> None:
    alarmed = alarms_on(template, metric, "FunctionName")
    assert set(alarmed) == FUNCTIONS
    for fn, alarm in alarmed.items():
        assert alarm["Namespace"] == "AWS/Lambda" and alarm["Statistic"] == "Sum", fn
        assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold", fn


def test_the_api_has_a_5xx_alarm_and_the_relay_an_iterator_age_alarm(template: Tpl) -> None:
    (api,) = alarms_on(template, "5xx", "ApiId").items()
    assert api[0] == "DocllmHttpApi" and api[1]["Namespace"] == "AWS/ApiGateway"
    (age,) = alarms_on(template, "IteratorAge", "FunctionName").items()
    assert age[0] == "OutboxRelayFunction"


def test_every_alarm_notifies_the_alarm_topic_and_missing_data_is_quiet(template: Tpl) -> None:
    for name, alarm in resources_of(template, "AWS::CloudWatch::Alarm").items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        # The canary's accuracy is the exception: a canary that stopped running is no evidence
        # of a good model (missing data keeps the alarm's state, then INSUFFICIENT_DATA).
        wanted = "missing" if name == "ServingCanaryAccuracyAlarm" else "notBreaching"
        assert alarm["Properties"]["TreatMissingData"] == wanted, name


def test_alarm_topic_policy_admits_this_stages_alarms_and_the_stage_failed_rule(template: Tpl) -> None:
    policy = props(template, "AlarmTopicPolicy")
    assert policy["Topics"] == [{"Ref": "AlarmTopic"}]
    statements = policy["PolicyDocument"]["Statement"]
    cloudwatch = by_sid(statements, "CloudWatchAlarmsPublish")
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    arn = cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    assert arn.endswith(f":alarm:{STAGE_PREFIX}*")  # every alarm name starts so
    (conditional,) = [st for st in statements if "Fn::If" in st]
    condition, rule, no = conditional["Fn::If"]
    assert (condition, no) == ("HasAlarmEmail", {"Ref": "AWS::NoValue"})
    assert rule["Principal"] == {"Service": "events.amazonaws.com"} and rule["Action"] == "sns:Publish"
    assert rule["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["StageFailedNotifyRule", "Arn"]}}}


# -------------------------------------------------------------- monitoring
# The alarms of issue 16: logical id, name, {metric: statistic}, metric-math expression (None for a
# single metric), period, evaluation periods, datapoints to alarm, threshold, comparison, missing data.
MONITORING_ALARMS: list[tuple[str, str, dict[str, str], str | None, int, int, int, Any, str, str]] = [
    ("ServingLatencyAlarm", "serving-p99-latency", {"AskLatency": "p99"}, None,
     10, 3, 2, {"Ref": "AskLatencyP99AlarmMs"}, "GreaterThanThreshold", "notBreaching"),
    ("ServingServerErrorRateAlarm", "serving-5xx-rate", {"AskServerErrors": "Sum", "AskRequests": "Sum"},
     "100 * errors / requests", 10, 3, 2, {"Ref": "AskServerErrorRateAlarmPercent"}, "GreaterThanThreshold",
     "notBreaching"),
    ("ServingUngroundedRateAlarm", "serving-ungrounded-rate", {"AskUngrounded": "Sum", "AskRequests": "Sum"},
     "100 * ungrounded / requests", 10, 3, 2, {"Ref": "AskUngroundedRateAlarmPercent"}, "GreaterThanThreshold",
     "notBreaching"),
    ("ServingCanaryAccuracyAlarm", "serving-canary-accuracy", {"CanaryAccuracy": "Average"}, None,
     300, 2, 2, {"Ref": "CanaryAccuracyAlarmPercent"}, "LessThanThreshold", "missing"),
    ("DriftLowScoreAlarm", "drift-low-score", {"DriftLowScore": "Average"}, None,
     300, 3, 3, 50, "GreaterThanThreshold", "notBreaching"),
    ("DriftOovRateAlarm", "drift-oov-rate", {"DriftOovRate": "Average"}, None,
     300, 3, 3, {"Ref": "DriftOovRateAlarmPercent"}, "GreaterThanThreshold", "notBreaching"),
]  # fmt: skip
THRESHOLD_DEFAULTS = {
    "AskLatencyP99AlarmMs": 2500,
    "AskServerErrorRateAlarmPercent": 5,
    "AskUngroundedRateAlarmPercent": 90,
    "CanaryAccuracyAlarmPercent": 10,
    "DriftOovRateAlarmPercent": 20,
}
# The function whose code puts each metric: the answer path (and its drift signals) runs in
# ApiFunction (POST /v1/ask); the canary's accuracy comes from CanaryFunction.
EMITTER = {"CanaryAccuracy": "CanaryFunction"}
SERVING_PREFIX = "docllm-${Stage}-serving-"
ALARM_SAMPLES = [
    "awsdocs/cloudwatch-alarm-state-change-single-metric.json",
    "awsdocs/cloudwatch-alarm-state-change-metric-math.json",
]


def alarm_metrics(p: dict[str, Any]) -> dict[str, tuple[str, str, int, dict[str, Any]]]:
    """``{metric name: (namespace, statistic, period, dimensions)}`` of a single-metric or metric-math alarm."""
    if "Metrics" not in p:
        stat = p.get("ExtendedStatistic") or p["Statistic"]
        dims = {d["Name"]: d["Value"] for d in p["Dimensions"]}
        return {p["MetricName"]: (p["Namespace"], stat, p["Period"], dims)}
    found = {}
    for q in p["Metrics"]:
        if "MetricStat" in q:
            m = q["MetricStat"]
            dims = {d["Name"]: d["Value"] for d in m["Metric"]["Dimensions"]}
            found[m["Metric"]["MetricName"]] = (m["Metric"]["Namespace"], m["Stat"], m["Period"], dims)
    return found


def emitted_dimension_sets(
    fn_env: dict[str, Any],
    metric: str,
    target: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[set[str], list[dict[str, str]]]:
    """The namespace and dimension sets the platform's metrics sink writes for ``metric`` (put with
    the answer path's ``{"Target": target}``) in a function with environment ``fn_env`` on AWS."""
    from docllm.bootstrap import Platform
    from docllm.settings import Settings

    # Literal values as the template sets them; intrinsics (table names, ARNs) as placeholders.
    env = {k: v if isinstance(v, str) else f"resolved-{k}" for k, v in fn_env.items()}
    env["DOCLLM_DEPLOY_TARGET"] = target
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sink = Platform(Settings.from_env(env)).metrics
    capsys.readouterr()
    sink.put(metric, 1.0, dimensions={"Target": target})
    sink.flush()
    namespaces: set[str] = set()
    sets: list[dict[str, str]] = []
    for line in capsys.readouterr().out.splitlines():
        emf = json.loads(line)
        for directive in emf["_aws"]["CloudWatchMetrics"]:
            if metric in {m["Name"] for m in directive["Metrics"]}:
                namespaces.add(directive["Namespace"])
                sets += [{name: emf[name] for name in dims} for dims in directive["Dimensions"]]
    return namespaces, sets


@pytest.mark.parametrize("row", MONITORING_ALARMS, ids=[r[0] for r in MONITORING_ALARMS])
def test_monitoring_alarm_is_named_and_evaluated_as_designed(template: Tpl, row: tuple[Any, ...]) -> None:
    logical, name, metrics, expression, period, evaluations, datapoints, threshold, comparison, missing = row
    p = props(template, logical)
    assert p["AlarmName"] == {"Fn::Sub": f"docllm-${{Stage}}-{name}"}
    found = alarm_metrics(p)
    assert {m: stat for m, (_, stat, _, _) in found.items()} == metrics
    assert {per for (_, _, per, _) in found.values()} == {period}
    if expression is None:
        assert "Metrics" not in p
    else:
        (result,) = [q for q in p["Metrics"] if q.get("ReturnData", True)]
        assert result["Expression"] == expression
        # The expression's operands are exactly the metrics fetched (and not returned).
        assert {q["Id"] for q in p["Metrics"] if "MetricStat" in q} == set(re.findall(r"[a-z]\w*", expression))
    assert (p["EvaluationPeriods"], p["DatapointsToAlarm"]) == (evaluations, datapoints)
    assert (p["Threshold"], p["ComparisonOperator"], p["TreatMissingData"]) == (threshold, comparison, missing)
    # Both transitions reach the topic (the OK tells the on-call person it is over).
    assert p["AlarmActions"] == p["OKActions"] == [{"Ref": "AlarmTopic"}]


def test_monitoring_thresholds_are_parameters_with_the_designed_defaults(template: Tpl) -> None:
    params = template["Parameters"]
    for name, default in THRESHOLD_DEFAULTS.items():
        assert params[name]["Type"] == "Number" and params[name]["Default"] == default, name
    used = {json.dumps(r[7]) for r in MONITORING_ALARMS}
    assert {json.dumps({"Ref": name}) for name in THRESHOLD_DEFAULTS} <= used


@pytest.mark.parametrize(
    ("alarm", "metric"),
    [(r[0], m) for r in MONITORING_ALARMS for m in r[2]],
    ids=[f"{r[0]}-{m}" for r in MONITORING_ALARMS for m in r[2]],
)
def test_alarm_dimensions_are_those_the_emitting_function_puts_on_the_metric(
    template: Tpl, alarm: str, metric: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An alarm whose dimensions differ from the metric's by one name or value never sees a
    # datapoint (INSUFFICIENT_DATA for ever, no rollback): compare with what the code emits, in
    # the environment the template gives the emitting function.
    namespace, _, _, dims = alarm_metrics(props(template, alarm))[metric]
    fn = EMITTER.get(metric, "ApiFunction")
    fn_env = env_of(template, fn)
    # Target is the function's deploy target, which is the alarm's.
    assert dims["Target"] == fn_env["DOCLLM_DEPLOY_TARGET"] == {"Ref": "DeployTarget"}
    target = template["Parameters"]["DeployTarget"]["Default"]
    namespaces, emitted = emitted_dimension_sets(fn_env, metric, target, monkeypatch, capsys)
    assert namespaces == {namespace}
    assert {**dims, "Target": target} in emitted, emitted


@pytest.mark.parametrize("sample", ALARM_SAMPLES)
def test_the_real_alarm_event_reaches_the_rollback_queue_only_for_this_stages_serving_alarms(
    template: Tpl, real_events_dir: Path, sample: str
) -> None:
    (rule,) = [r for r in read_wiring(TEMPLATE).rules if r.name == "ServingAlarmStateRule"]
    assert rule.bus == "default" and rule.targets == ("RollbackQueue",)  # CloudWatch's bus
    event = json.loads((real_events_dir / sample).read_text(encoding="utf-8"))
    assert event["detail"]["state"]["value"] == "ALARM"

    def named(name: str, state: str = "ALARM") -> dict[str, Any]:
        detail = {**event["detail"], "alarmName": name, "state": {**event["detail"]["state"], "value": state}}
        return {**event, "detail": detail}

    assert not matches(rule.pattern, event)  # someone else's alarm, as AWS sent it
    stage = template["Parameters"]["Stage"]["Default"]
    for logical, suffix, *_ in MONITORING_ALARMS:
        name = f"docllm-{stage}-{suffix}"
        serving = logical.startswith("Serving")
        assert matches(rule.pattern, named(name)) is serving, name
        assert matches(rule.pattern, named(name, "OK")) is serving, name  # the recovery, for the incident
        assert not matches(rule.pattern, named(name, "INSUFFICIENT_DATA")), name
        # The local platform's per-version instances of an alarm, <name>@<version>.
        assert matches(rule.pattern, named(f"{name}@v2")) is serving, name
        assert not matches(rule.pattern, named(name.replace(f"-{stage}-", "-prod-"))), name  # another stage's


def test_only_the_serving_alarms_can_trigger_a_rollback(template: Tpl) -> None:
    names = {
        n: sub_text(a["Properties"]["AlarmName"]) for n, a in resources_of(template, "AWS::CloudWatch::Alarm").items()
    }
    serving = {n for n, name in names.items() if name.startswith(SERVING_PREFIX)}
    assert serving == {r[0] for r in MONITORING_ALARMS if r[1].startswith("serving-")}
    (rule,) = [r for r in ROUTES if r[5] == "ServingAlarmStateRule"]
    assert rule[7]["detail"]["alarmName"] == [{"prefix": {"Fn::Sub": SERVING_PREFIX}}]


def test_the_rollback_handler_redeploys_with_the_deployers_settings_and_notifies_the_topic(template: Tpl) -> None:
    env, deployer = env_of(template, "RollbackFunction"), env_of(template, "DeployFunction")
    shared = {k for k in deployer if k.startswith("DOCLLM_") and k != "DOCLLM_DEAD_LETTER_QUEUE"}
    assert {k: env[k] for k in shared} == {k: deployer[k] for k in shared}
    assert env["DOCLLM_ALARM_TOPIC_ARN"] == {"Ref": "AlarmTopic"}
    statements = function_statements(template, "RollbackFunction")
    assert by_sid(statements, "NotifyAlarmTopic") == {
        "Sid": "NotifyAlarmTopic",
        "Effect": "Allow",
        "Action": "sns:Publish",
        "Resource": {"Ref": "AlarmTopic"},
    }
    # An endpoint configuration it has to recreate obeys the deployer's instance-type condition.
    sid = "CreateEndpointConfigsOnAllowedInstances"
    assert by_sid(statements, sid) == by_sid(function_statements(template, "DeployFunction"), sid)


def test_the_rollback_role_names_every_action_and_creates_no_model_or_endpoint(template: Tpl) -> None:
    statements = function_statements(template, "RollbackFunction")
    actions = {a for st in statements for a in as_list(st["Action"])}
    assert not [a for a in actions if "*" in a]
    assert all(st["Effect"] == "Allow" for st in statements)
    # Points an existing endpoint back at a configuration; never a new model (no role to pass),
    # endpoint, autoscaling, Bedrock import or registry package.
    assert not actions & {
        "sagemaker:CreateModel",
        "sagemaker:CreateEndpoint",
        "sagemaker:DeleteEndpoint",
        "sagemaker:CreateModelPackage",
        "sagemaker:DeleteModelPackage",
        "iam:PassRole",
        "bedrock:CreateModelImportJob",
        "application-autoscaling:RegisterScalableTarget",
    }
    assert {"sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:UpdateModelPackage"} <= actions


def test_the_canary_runs_every_five_minutes_on_a_schedule_that_can_invoke_only_it(template: Tpl) -> None:
    schedule = template["Resources"]["CanarySchedule"]
    assert schedule["Type"] == "AWS::Scheduler::Schedule"
    p = schedule["Properties"]
    assert p["Name"] == {"Fn::Sub": "docllm-${Stage}-canary"}
    assert p["ScheduleExpression"] == "rate(5 minutes)" and p["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert p["KmsKeyArn"] == KMS_KEY_ARN
    target = p["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["CanaryFunction", "Arn"]}
    assert json.loads(target["Input"]) == {
        "source": "docllm.schedule",
        "detail-type": "Canary Run Requested",
        "detail": {},
    }
    # ... which is what the canary's handler takes.
    from docllm.service_layer.canary import CANARY_RUN_REQUESTED, SCHEDULE_SOURCE

    assert (SCHEDULE_SOURCE, CANARY_RUN_REQUESTED) == ("docllm.schedule", "Canary Run Requested")
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["CanaryScheduleDLQ", "Arn"]}}
    assert target["RoleArn"] == {"Fn::GetAtt": ["CanaryScheduleRole", "Arn"]}
    # The scheduler's role: this stage's canary schedule assumes it, and it invokes that one function.
    role = props(template, "CanaryScheduleRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source = sub_text(trust["Condition"]["ArnEquals"]["aws:SourceArn"])
    assert source.endswith(":schedule/default/" + sub_text(p["Name"]))
    grants = {(a, json.dumps(st["Resource"])) for st in role_statements(template, "CanaryScheduleRole")
              for a in as_list(st["Action"])}  # fmt: skip
    assert grants == {
        ("lambda:InvokeFunction", json.dumps({"Fn::GetAtt": ["CanaryFunction", "Arn"]})),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["CanaryScheduleDLQ", "Arn"]})),
        ("kms:Decrypt", json.dumps(KMS_KEY_ARN)),
        ("kms:GenerateDataKey", json.dumps(KMS_KEY_ARN)),
    }
    canary = props(template, "CanaryFunction")
    assert canary["CodeUri"] == "services/canary/" and canary["Handler"] == "app.handler"
    # Only the schedule invokes it, a failed run is not retried, and a run ends before the next starts.
    assert "Events" not in canary
    assert canary["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert canary["Timeout"] < 300
    assert env_of(template, "CanaryFunction")["DOCLLM_DEPLOY_TARGET"] == {"Ref": "DeployTarget"}


def test_the_canary_writes_only_its_records_and_reads_only_its_question_sources(template: Tpl) -> None:
    from docllm.monitoring.canary import CANARY_SET_KEY
    from docllm.service_layer.canary import CANARY_RUNS_PK, CANARY_SETS_PK

    statements = function_statements(template, "CanaryFunction")
    writes = [st for st in statements if {"dynamodb:PutItem", "dynamodb:DeleteItem"} & set(as_list(st["Action"]))]
    assert writes == [by_sid(statements, "RecordCanaryRuns")]
    assert writes[0]["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": sorted([CANARY_RUNS_PK, CANARY_SETS_PK])}
    }
    # The operator's set (that one object), and the datasets the default set is built from.
    reads = {sub_text(r) for st in statements_with(statements, "s3:GetObject") for r in as_list(st["Resource"])}
    assert reads == {f"${{RawBucket.Arn}}/{CANARY_SET_KEY}", "${ArtifactBucket.Arn}/datasets/*"}
    assert not [a for st in statements for a in as_list(st["Action"]) if a.startswith(("s3:Put", "s3:Delete"))]
    # No events: a run is an observation, its metrics are its announcement.
    assert not statements_with(statements, "events:PutEvents")


def test_only_the_canary_reads_metrics_back_for_the_live_service_mix(template: Tpl) -> None:
    statements = function_statements(template, "CanaryFunction")
    read = by_sid(statements, "ReadLiveQuestionMetrics")
    assert read["Effect"] == "Allow" and read["Resource"] == "*"
    assert sorted(as_list(read["Action"])) == ["cloudwatch:GetMetricData", "cloudwatch:ListMetrics"]
    assert "Condition" not in read  # a condition on a key these actions lack would deny every call
    readers = {
        n
        for n in FUNCTIONS | SERVING_FUNCTIONS
        if statements_with(function_statements(template, n), "cloudwatch:GetMetricData")
    }
    assert readers == {"CanaryFunction"}


# ------------------------------------------------------------- stage failed
def test_stage_failed_events_are_kept_in_an_alarmed_queue_and_sent_to_the_topic(template: Tpl) -> None:
    pattern = {"source": [StageFailed.SOURCE], "detail-type": [StageFailed.DETAIL_TYPE]}
    keep = props(template, "StageFailedRule")
    assert keep["EventBusName"] == {"Ref": "DocllmBus"} and keep["EventPattern"] == pattern
    assert [t["Arn"] for t in keep["Targets"]] == [{"Fn::GetAtt": ["StageFailedQueue", "Arn"]}]
    queue = props(template, "StageFailedQueue")
    assert queue["KmsMasterKeyId"] == KMS_KEY_REF
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["StageFailedQueueDLQ", "Arn"]}
    depth = alarms_on(template, "ApproximateNumberOfMessagesVisible", "QueueName")
    assert depth["StageFailedQueue"]["Threshold"] == 0
    notify = props(template, "StageFailedNotifyRule")
    assert notify["EventBusName"] == {"Ref": "DocllmBus"} and notify["EventPattern"] == pattern
    (target,) = notify["Targets"]
    assert target["Arn"] == {"Ref": "AlarmTopic"}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["EventDeliveryDLQ", "Arn"]}}
    paths = target["InputTransformer"]["InputPathsMap"]
    assert set(paths) == {"stage", "subject", "reason", "time"}
    fields = set(StageFailed.model_fields)
    assert {p.removeprefix("$.detail.") for p in paths.values() if p.startswith("$.detail.")} <= fields
    dead_letter = by_sid(
        props(template, "EventDeliveryDLQPolicy")["PolicyDocument"]["Statement"], "AllowRulesToDeadLetter"
    )
    sources = dead_letter["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert {"Fn::GetAtt": ["StageFailedRule", "Arn"]} in sources
    assert {
        "Fn::If": ["HasAlarmEmail", {"Fn::GetAtt": ["StageFailedNotifyRule", "Arn"]}, {"Ref": "AWS::NoValue"}]
    } in sources


def test_every_rule_can_dead_letter_its_undeliverable_events(template: Tpl) -> None:
    statement = by_sid(
        props(template, "EventDeliveryDLQPolicy")["PolicyDocument"]["Statement"], "AllowRulesToDeadLetter"
    )
    allowed = {b["Fn::GetAtt"][0] for s in statement["Condition"]["ArnEquals"]["aws:SourceArn"] for b in if_branches(s)}
    for name, rule in resources_of(template, "AWS::Events::Rule").items():
        assert name in allowed, name
        for target in rule["Properties"]["Targets"]:
            assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["EventDeliveryDLQ", "Arn"]}}, name


def test_stage_failed_queue_lets_only_its_rule_send(template: Tpl) -> None:
    (policy,) = [
        p["Properties"]
        for p in resources_of(template, "AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [{"Ref": "StageFailedQueue"}]
    ]
    allow = by_sid(policy["PolicyDocument"]["Statement"], "AllowRuleToSend")
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["StageFailedRule", "Arn"]}}}


# ------------------------------------------------------- production profile
PROD_OK = {
    "Stage": "prod",
    "SearchNetworkAccess": "vpc",
    "SubnetIds": "subnet-1,subnet-2",
    "SecurityGroupIds": "sg-1",
    "VpcId": "vpc-1",
    "AlarmEmail": "ops@example.com",
    "DataDeletionProtection": "true",
}


def test_a_complete_prod_deployment_passes_every_rule(template: Tpl) -> None:
    assert failed_assertions(template, PROD_OK) == []


@pytest.mark.parametrize(
    ("missing", "value"),
    [
        ("SearchNetworkAccess", "public-iam"),
        ("SubnetIds", ""),
        ("SecurityGroupIds", ""),
        ("VpcId", ""),
        ("AlarmEmail", ""),
        ("DataDeletionProtection", "false"),
    ],
)
def test_prod_is_refused_without_private_network_alarm_email_or_protection(
    template: Tpl, missing: str, value: str
) -> None:
    failed = failed_assertions(template, {**PROD_OK, missing: value})
    assert any(f.startswith("Stage=prod needs") and missing in f for f in failed), failed
    assert failed_assertions(template, {**PROD_OK, missing: value, "Stage": "staging"}) == [
        f for f in failed if not f.startswith("Stage=prod")
    ]


def test_dev_with_the_defaults_passes_every_rule(template: Tpl) -> None:
    assert failed_assertions(template, {}) == []


def test_samconfig_prod_profile_sets_what_the_rules_cannot_take_from_the_account() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))
    overrides = dict(re.findall(r'(\w+)="([^"]*)"', config["prod"]["deploy"]["parameters"]["parameter_overrides"]))
    assert overrides["Stage"] == "prod"
    assert overrides["SearchNetworkAccess"] == "vpc"
    assert overrides["DataDeletionProtection"] == "true"
    # Create-only on the collection: decided at the first deployment.
    assert overrides["SearchStandbyReplicas"] == "ENABLED"


def test_search_collection_is_stage_named_and_its_create_only_settings_are_documented(template: Tpl) -> None:
    assert props(template, "SearchCollection")["Name"] == {"Fn::Sub": "docllm-${Stage}"}
    assert props(template, "SearchCollection")["StandbyReplicas"] == {"Ref": "SearchStandbyReplicas"}
    doc = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert "StandbyReplicas" in doc and "create-only" in doc


# ----------------------------------------------------------------------- CI
def test_every_checkov_skip_says_why(template: Tpl) -> None:
    skips = [
        (name, skip)
        for name, res in template["Resources"].items()
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), name
        assert len(skip.get("comment", "")) > 20, (name, skip["id"])


def test_ci_runs_the_template_linters_and_the_sam_checks() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/template-lint.sh" in ci and "scripts/sam-check.sh" in ci
    lint = (REPO / "scripts" / "template-lint.sh").read_text(encoding="utf-8")
    assert re.search(r'^CHECKOV_VERSION="\d+\.\d+\.\d+"$', lint, flags=re.M)
    assert ".venv/bin/cfn-lint template.yaml" in lint and "--skip-download" in lint
    sam = (REPO / "scripts" / "sam-check.sh").read_text(encoding="utf-8")
    assert "validate --lint" in sam and "check_sam_transform.py" in sam and "build" in sam


def test_deployment_doc_lists_what_only_a_first_deployment_can_prove() -> None:
    doc = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = doc.split("## First deployment: what to verify by hand, in order", 1)[1].split("\n## ", 1)[0]
    for topic in ["OpenSearch Serverless", "KMS", "VPC endpoint", "SageMaker", "subscription", "EventBridge", "stream"]:
        assert topic in section, topic


# ------------------------------------------------------------- Bedrock model customization
CUSTOMIZATION_JOBS = "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:model-customization-job/*"


def test_bedrock_customization_role_serves_only_this_accounts_jobs_and_only_customizations(template: Tpl) -> None:
    role = props(template, "BedrockCustomizationRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnLike": {"aws:SourceArn": {"Fn::Sub": CUSTOMIZATION_JOBS}},
    }
    statements = role_statements(template, "BedrockCustomizationRole")
    art = "${ArtifactBucket.Arn}/"
    reads = {sub_text(st["Resource"]) for st in statements_with(statements, "s3:GetObject")}
    writes = {sub_text(st["Resource"]) for st in statements_with(statements, "s3:PutObject")}
    assert reads == {art + "customizations/*"} and writes == {art + "customizations/*/output/*"}
    (listing,) = statements_with(statements, "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["customizations/*"]}}
    (key,) = [st for st in statements if any(a.startswith("kms:") for a in as_list(st["Action"]))]
    assert key["Resource"] == KMS_KEY_ARN and "kms:CreateGrant" not in key["Action"]
    assert not star_resource_violations(statements)
    vpc = template["Resources"]["BedrockCustomizationVpcPolicy"]
    assert vpc["Condition"] == "HasVpc" and props(template, "BedrockCustomizationVpcPolicy")["RoleName"] == {
        "Ref": "BedrockCustomizationRole"
    }


def test_only_the_train_stage_creates_customization_jobs_on_our_key_and_role(template: Tpl) -> None:
    for fn in FUNCTIONS - {"OutboxRelayFunction"}:
        creates = statements_with(function_statements(template, fn), "bedrock:CreateModelCustomizationJob")
        assert bool(creates) == (fn == "TrainFunction"), fn
    statements = function_statements(template, "TrainFunction")
    (create,) = statements_with(statements, "bedrock:CreateModelCustomizationJob")
    assert {sub_text(r).rsplit(":", 1)[-1] for r in create["Resource"]} == {
        "foundation-model/*",
        "custom-model/*",
        "model-customization-job/*",
    }
    (grant,) = statements_with(statements, "kms:CreateGrant")
    assert grant["Resource"] == KMS_KEY_ARN
    assert grant["Condition"]["StringEquals"] == {"kms:ViaService": {"Fn::Sub": "bedrock.${AWS::Region}.amazonaws.com"}}
    assert grant["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}
    (data,) = [st for st in statements_with(statements, "s3:PutObject") if "customizations" in sub_text(st["Resource"])]
    assert sub_text(data["Resource"]) == "${ArtifactBucket.Arn}/customizations/*"
    env = env_of(template, "TrainFunction")
    assert env["DOCLLM_BEDROCK_CUSTOMIZATION_ROLE_ARN"] == {"Fn::GetAtt": ["BedrockCustomizationRole", "Arn"]}


def test_the_customize_stage_only_reads_customization_jobs_back(template: Tpl) -> None:
    statements = function_statements(template, "CustomizeFunction")
    bedrock = [st for st in statements if any(a.startswith("bedrock:") for a in as_list(st["Action"]))]
    assert bedrock == [by_sid(statements, "DescribeCustomizationJobs")]
    assert bedrock[0]["Action"] == "bedrock:GetModelCustomizationJob"
    assert bedrock[0]["Resource"] == {"Fn::Sub": CUSTOMIZATION_JOBS}
    assert not [st for st in statements if any(a.startswith(("s3:", "sagemaker:")) for a in as_list(st["Action"]))]
