"""Static checks of ``template.yaml``: routing the local runtime relies on, and security invariants.

The template is read with cfn-lint's decoder, which understands the short-form
intrinsics (``!Ref``, ``!GetAtt``, ``!Sub`` ...) and turns them into their long
form (``{"Ref": ...}``). Full ``cfn-lint``/``sam validate --lint`` runs live in
``scripts/sam-check.sh`` (10+ s, too slow for the unit tier).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from docllm.events.contracts import CONTRACTS

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"

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
        5,
        "RawObjectEventsRule",
        None,
        {
            "source": ["aws.s3"],
            "detail-type": ["Object Created", "Object Deleted"],
            "detail": {"bucket": {"name": [{"Ref": "RawBucket"}]}},
        },
    ),
    (
        "IndexFunction",
        "index",
        "IndexQueue",
        10,
        5,
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
        "TrainFunction",
        "train",
        "TrainQueue",
        1,
        3,
        "TrainRequestsRule",
        "DocllmBus",
        {
            "source": ["docllm.dataset", "docllm.training"],
            "detail-type": ["Dataset Tokenized", "Training Requested"],
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
                "TrainingJobName": [{"prefix": "docllm-"}],
                "TrainingJobStatus": ["Completed", "Failed", "Stopped"],
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
    "DOCLLM_SAGEMAKER_ROLE_ARN",
    "DOCLLM_IMAGE_TOKENIZER",
    "DOCLLM_IMAGE_TRAIN",
    "DOCLLM_SUBNET_IDS",
    "DOCLLM_SECURITY_GROUP_IDS",
}
JOB_LAUNCHERS = {"TokenizerFunction", "ShardsFunction", "TrainFunction"}

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


def statements_of(policies: list[Any]) -> Iterator[dict[str, Any]]:
    """Inline statements of a SAM ``Policies`` list (policy templates and managed names are skipped)."""
    for item in policies:
        if isinstance(item, dict) and "Statement" in item:
            yield from as_list(item["Statement"])


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


# -------------------------------------------------------- the helpers can fail
def test_star_resource_check_flags_a_wildcard_statement() -> None:
    wildcard = [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*", "Sid": "Oops"}]
    tolerated = [{"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]
    assert star_resource_violations(wildcard) == ["Oops: ['s3:GetObject']"]
    assert star_resource_violations(tolerated) == []


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


def test_kms_key_rotates_and_is_administered_by_the_account(template: Tpl) -> None:
    key = props(template, "DocllmKey")
    assert key["EnableKeyRotation"] is True
    principals = [st["Principal"] for st in key["KeyPolicy"]["Statement"]]
    assert {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}} in principals
    assert props(template, "DocllmKeyAlias")["TargetKeyId"] == {"Ref": "DocllmKey"}


# ------------------------------------------------------------------ buckets
def test_every_bucket_blocks_public_access_and_enforces_ownership(template: Tpl) -> None:
    buckets = resources_of(template, "AWS::S3::Bucket")
    assert set(buckets) == {"RawBucket", "ProcessedBucket", "ArtifactBucket", "AccessLogBucket"}
    for name, bucket in buckets.items():
        p = bucket["Properties"]
        assert all(
            p["PublicAccessBlockConfiguration"][k] is True
            for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        ), name
        assert p["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}], name
        assert p["VersioningConfiguration"]["Status"] == "Enabled", name
        rules = p["LifecycleConfiguration"]["Rules"]
        assert any("NoncurrentVersionExpiration" in r for r in rules), name


def test_data_buckets_encrypt_with_the_cmk_and_log_access(template: Tpl) -> None:
    for name in ("RawBucket", "ProcessedBucket", "ArtifactBucket"):
        p = props(template, name)
        (rule,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KMS_KEY_ARN}
        assert rule["BucketKeyEnabled"] is True
        assert p["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogBucket"}


def test_access_log_bucket_uses_sse_s3_because_log_delivery_requires_it(template: Tpl) -> None:
    (rule,) = props(template, "AccessLogBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert "LoggingConfiguration" not in props(template, "AccessLogBucket")


@pytest.mark.parametrize("bucket", ["RawBucket", "ProcessedBucket", "ArtifactBucket", "AccessLogBucket"])
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
    ids=[r[0] for r in ROUTES],
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
        for target in rule["Properties"]["Targets"]:
            arn = target["Arn"]["Fn::GetAtt"]
            assert arn[0] in queues and arn[1] == "Arn", name
        assert set(pattern_operators(rule["Properties"]["EventPattern"])) <= PATTERN_OPERATORS, name


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
        if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
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


@pytest.mark.parametrize(("queue", "rule"), [(r[2], r[5]) for r in ROUTES])
def test_queue_policy_lets_only_its_rule_send(template: Tpl, queue: str, rule: str) -> None:
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
            "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule, "Arn"]}}},
        }
    ]


# ---------------------------------------------------------------- functions
def test_every_function_is_traced_layered_and_logs_to_its_own_retained_group(template: Tpl) -> None:
    functions = resources_of(template, "AWS::Serverless::Function")
    assert set(functions) == {r[0] for r in ROUTES} | {"ApiFunction"}
    groups = resources_of(template, "AWS::Logs::LogGroup")
    for name, fn in functions.items():
        p = fn["Properties"]
        assert p["Tracing"] == "Active", name
        assert p["Runtime"] == "python3.11" and p["Architectures"] == ["x86_64"], name
        assert p["Layers"] == [{"Ref": "DocllmLayer"}], name
        group_id = p["LoggingConfig"]["LogGroup"]["Ref"]
        group = groups[group_id]["Properties"]
        short = p["FunctionName"]["Fn::Sub"]
        assert group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/{short}"}, name
        assert "RetentionInDays" in group and group["KmsKeyId"] == KMS_KEY_ARN, name


def test_function_inline_statements_never_grant_star_resources(template: Tpl) -> None:
    for name, fn in resources_of(template, "AWS::Serverless::Function").items():
        statements = list(statements_of(fn["Properties"]["Policies"]))
        assert statements, name
        assert star_resource_violations(statements) == [], name
        # Nothing broader than the managed AWS policies SAM attaches itself.
        assert not [p for p in fn["Properties"]["Policies"] if isinstance(p, str)], name


def test_job_role_uses_star_only_where_aws_requires_it(template: Tpl) -> None:
    role = props(template, "SageMakerJobRole")
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    statements = [st for pol in role["Policies"] for st in pol["PolicyDocument"]["Statement"]]
    statements += props(template, "SageMakerJobVpcPolicy")["PolicyDocument"]["Statement"]
    assert star_resource_violations(statements) == []


@pytest.mark.parametrize("fn", sorted(JOB_LAUNCHERS))
def test_job_launchers_may_only_pass_the_job_role_to_sagemaker(template: Tpl, fn: str) -> None:
    statements = list(statements_of(props(template, fn)["Policies"]))
    (passrole,) = [st for st in statements if "iam:PassRole" in as_list(st["Action"])]
    assert passrole["Resource"] == {"Fn::GetAtt": ["SageMakerJobRole", "Arn"]}
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    (create,) = [st for st in statements if "sagemaker:CreateTrainingJob" in as_list(st["Action"])]
    assert create["Resource"]["Fn::Sub"].endswith(":training-job/docllm-*")
    assert set(env_of(template, fn)) >= JOB_ENV


def test_only_launchers_can_create_training_jobs(template: Tpl) -> None:
    creators = {
        name
        for name, fn in resources_of(template, "AWS::Serverless::Function").items()
        if any(
            "sagemaker:CreateTrainingJob" in as_list(st["Action"]) for st in statements_of(fn["Properties"]["Policies"])
        )
    }
    assert creators == JOB_LAUNCHERS


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
    assert routes == {("GET", "/v1/search"), ("GET", "/v1/documents"), ("GET", "/v1/status"), ("GET", "/openapi.json")}
    for e in events:
        assert e["Properties"]["ApiId"] == {"Ref": "DocllmHttpApi"}
        # No per-route override may switch authentication off.
        assert "Auth" not in e["Properties"]


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


def test_only_index_and_api_roles_reach_the_search_index(template: Tpl) -> None:
    text = props(template, "SearchDataAccessPolicy")["Policy"]["Fn::Sub"]
    text = (
        text.replace("${Stage}", "dev")
        .replace("${IndexFunctionRole.Arn}", "index-role")
        .replace("${ApiFunctionRole.Arn}", "api-role")
    )
    grants = {entry["Principal"][0]: entry["Rules"] for entry in json.loads(text)}
    assert set(grants) == {"index-role", "api-role"}
    for rules in grants.values():
        assert all(r["ResourceType"] == "index" and r["Resource"] == ["index/docllm-dev/*"] for r in rules)
    assert set(grants["api-role"][0]["Permission"]) == {"aoss:ReadDocument", "aoss:DescribeIndex"}
    assert set(grants["index-role"][0]["Permission"]) == {
        "aoss:ReadDocument",
        "aoss:WriteDocument",
        "aoss:CreateIndex",
        "aoss:UpdateIndex",
        "aoss:DescribeIndex",
    }
    callers = {
        name
        for name, fn in resources_of(template, "AWS::Serverless::Function").items()
        if any("aoss:APIAccessAll" in as_list(st["Action"]) for st in statements_of(fn["Properties"]["Policies"]))
    }
    assert callers == {"IndexFunction", "ApiFunction"}


# ------------------------------------------------------------------ layer & outputs
def test_layer_builds_from_shared_with_the_python_build_method(template: Tpl) -> None:
    layer = template["Resources"]["DocllmLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "shared/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.11"]
    assert layer["Metadata"]["BuildMethod"] == "python3.11"


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
    wanted |= {"StateTable", "IdempotencyTable", "DocllmBus", "SearchCollection", "SageMakerJobRole"}
    assert wanted <= referenced, wanted - referenced
    assert "DocllmHttpApi" in template["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]
