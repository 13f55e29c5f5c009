"""Log records name the function that wrote them (issue 13): under ``docllm up`` every handler
shares one Powertools ``Logger`` while worker threads invoke them concurrently, and the keys
``inject_lambda_context`` sets (function name, request id) and the correlation id lived in the
logger's shared state — 430 of 1,250 "handled" records named another function."""

from __future__ import annotations

import json
import logging
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest

from docllm.lambda_support import logger
from docllm.runtime.local import LocalRuntime

FUNCTIONS = [f"Fn{i}" for i in range(4)]
PER_FUNCTION = 12

HANDLERS = """
import random, time

from docllm.lambda_support import handle_sqs_events, logger


def _handle(name):
    def handle(_platform, event):
        time.sleep(random.uniform(0.001, 0.02))  # others run meanwhile, as real stages do
        return {"fn": name, "id": event["id"]}
    return handle


def _handler(name):
    @logger.inject_lambda_context
    def handler(event, context):
        return handle_sqs_events(event, context, _handle(name))
    return handler

{definitions}
"""


def template(root: Path) -> Path:
    parts = [
        "Transform: AWS::Serverless-2016-10-31",
        "Resources:",
        "  RawBucket:",
        "    Type: AWS::S3::Bucket",
        "    Properties:",
        "      VersioningConfiguration: {Status: Enabled}",
        "      NotificationConfiguration: {EventBridgeConfiguration: {EventBridgeEnabled: true}}",
    ]
    for name in FUNCTIONS:
        parts += [
            f"  {name}Queue:",
            "    Type: AWS::SQS::Queue",
            "    Properties:",
            "      VisibilityTimeout: 30",
            f"      RedrivePolicy: {{deadLetterTargetArn: !GetAtt {name}DLQ.Arn, maxReceiveCount: 3}}",
            f"  {name}DLQ:",
            "    Type: AWS::SQS::Queue",
            f"  {name}Rule:",
            "    Type: AWS::Events::Rule",
            "    Properties:",
            "      EventPattern:",
            "        source: [aws.s3]",
            f"        detail: {{object: {{key: [{{prefix: {name}/}}]}}}}",
            f"      Targets: [{{Id: q, Arn: !GetAtt {name}Queue.Arn}}]",
            f"  {name}:",
            "    Type: AWS::Serverless::Function",
            "    Properties:",
            "      CodeUri: ./",
            f"      Handler: handlers.{name.lower()}",
            "      Timeout: 10",
            "      Events:",
            f"        Q: {{Type: SQS, Properties: {{Queue: !GetAtt {name}Queue.Arn, BatchSize: 1}}}}",
        ]
    (root / "template.yaml").write_text("\n".join(parts) + "\n")
    definitions = "\n".join(f"{n.lower()} = _handler({n!r})" for n in FUNCTIONS)
    (root / "handlers.py").write_text(textwrap.dedent(HANDLERS).replace("{definitions}", definitions))
    return root / "template.yaml"


class Formatted(logging.Handler):
    """What the Powertools handler prints, formatted when the record is emitted (as stdout is)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logger.registered_formatter)
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def formatted():
    handler = Formatted()
    logger.addHandler(handler)
    yield handler
    logger._logger.removeHandler(handler)  # Powertools' Logger has no removeHandler of its own


@pytest.mark.slow
def test_every_handled_record_names_the_function_and_invocation_that_handled_it(tmp_path: Path, formatted):
    code = tmp_path / "code"
    code.mkdir()
    rt = LocalRuntime(tmp_path / "data", template=template(code), port=0, auth=False, poll_interval_s=0.001)
    rt.start()
    try:
        assert rt.platform is not None
        for i in range(PER_FUNCTION):
            for name in FUNCTIONS:
                rt.platform.objects.put("RawBucket", f"{name}/{i}.md", b"x")
        assert rt.wait_idle(120)
    finally:
        rt.stop()
    handled = [r for r in formatted.lines if r.get("message") == "handled"]
    assert Counter(r["result"]["fn"] for r in handled) == dict.fromkeys(FUNCTIONS, PER_FUNCTION)
    wrong = [
        (r["result"]["fn"], r.get("function_name"))
        for r in handled
        if r.get("function_name") != r["result"]["fn"] or r.get("correlation_id") != r["result"]["id"]
    ]
    assert wrong == [], f"{len(wrong)} of {len(handled)} records name another function or event"
    # One invocation per record (BatchSize 1): no two records share an invocation's request id.
    assert len({r["function_request_id"] for r in handled}) == len(handled)


def test_the_api_function_records_name_it_while_a_worker_rewrites_the_shared_keys(formatted):
    from docllm.runtime.http import Request, respond
    from docllm.runtime.template import FunctionSpec, HttpRoute

    fn = FunctionSpec("ApiFunction", "x/", "app.handler", 30, {}, http_routes=(HttpRoute("GET", "/v1/status"),))

    @logger.inject_lambda_context
    def handler(event, context):
        # What a worker thread's inject_lambda_context does meanwhile, on the same Logger.
        worker = threading.Thread(target=lambda: logger.append_keys(function_name="IngestFunction"))
        worker.start()
        worker.join()
        logger.info("answered")
        return {"statusCode": 200, "body": "{}"}

    reply = respond(fn, handler, None, Request("GET", "/v1/status", {"host": "x"}, b"", "127.0.0.1"))
    request_id = dict(reply.headers)["apigw-requestid"]
    (line,) = [r for r in formatted.lines if r["message"] == "answered"]
    assert (line["function_name"], line["correlation_id"]) == ("ApiFunction", request_id)
