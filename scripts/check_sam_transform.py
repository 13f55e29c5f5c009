"""Check what the SAM transform makes of template.yaml (run with the SAM tool venv's Python).

``tests/unit/test_template.py`` checks the template as written; this checks what SAM
generates from it, which is what CloudFormation deploys:

* SAM generated no IAM role and attached no AWS managed policy (SAM's own execution
  role would carry ``AWSLambdaSQSQueueExecutionRole``, SQS on ``*``);
* every function runs as its own ``<Function>Role``;
* every event source mapping polls a source its function's role may read, and
  nothing else of that kind.

Usage: ``.tools/sam/bin/python scripts/check_sam_transform.py template.yaml``
(``scripts/sam-check.sh`` runs it). Needs no AWS access; a region must be set.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

POLL_ACTIONS = {
    "sqs": {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    "stream": {"dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream"},
}


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in role["Properties"].get("Policies", []):
        branches = policy["Fn::If"][1:] if "Fn::If" in policy else [policy]
        for p in branches:
            if isinstance(p, dict) and "PolicyDocument" in p:
                found += _as_list(p["PolicyDocument"]["Statement"])
    return found


def check(path: Path) -> list[str]:
    written = yaml_parse(path.read_text(encoding="utf-8"))
    tpl = copy.deepcopy(written)
    for res in tpl["Resources"].values():  # sam validate does the same: code is not packaged here
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://bucket/key"
        elif res["Type"] == "AWS::Serverless::LayerVersion":
            res["Properties"]["ContentUri"] = "s3://bucket/key"
    out = transform(tpl, {}, _NoManagedPolicies())["Resources"]

    problems = []
    roles_written = {k for k, v in written["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    roles_out = {k: v for k, v in out.items() if v["Type"] == "AWS::IAM::Role"}
    if set(roles_out) != roles_written:
        problems.append(f"SAM generated roles: {sorted(set(roles_out) - roles_written)}")
    for name, role in roles_out.items():
        if role["Properties"].get("ManagedPolicyArns"):
            problems.append(f"{name} has managed policies: {role['Properties']['ManagedPolicyArns']}")

    functions = {k: v for k, v in out.items() if v["Type"] == "AWS::Lambda::Function"}
    for name, fn in functions.items():
        if fn["Properties"].get("Role") != {"Fn::GetAtt": [f"{name}Role", "Arn"]}:
            problems.append(f"{name} does not run as {name}Role: {fn['Properties'].get('Role')}")

    mappings = [v["Properties"] for v in out.values() if v["Type"] == "AWS::Lambda::EventSourceMapping"]
    if not mappings:
        problems.append("no event source mappings at all")
    for esm in mappings:
        fn = esm["FunctionName"]["Ref"]
        source = esm["EventSourceArn"]
        kind = "stream" if source.get("Fn::GetAtt", [None, None])[1] == "StreamArn" else "sqs"
        polling = [
            st
            for st in _statements(roles_out[f"{fn}Role"])
            if st["Effect"] == "Allow" and POLL_ACTIONS[kind] & set(_as_list(st["Action"]))
        ]
        granted = {a for st in polling if st["Resource"] == source for a in _as_list(st["Action"])}
        if not POLL_ACTIONS[kind] <= granted:
            problems.append(f"{fn}: its role lacks {sorted(POLL_ACTIONS[kind] - granted)} on {source}")
        others = [st["Resource"] for st in polling if st["Resource"] != source]
        if others:
            problems.append(f"{fn}: its role may also poll {others}, not only its source {source}")
    return problems


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "template.yaml")
    problems = check(path)
    for p in problems:
        print(f"!! {p}", file=sys.stderr)
    if not problems:
        print("ok: no SAM-generated role or managed policy; each event source readable by its own function only")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
