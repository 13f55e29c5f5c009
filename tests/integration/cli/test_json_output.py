"""Every verb with --json prints valid JSON on stdout, for success and for failure (issue 13).

A failure is ``{"error": "..."}`` with a non-zero exit code. ``docs/cli.md`` documents each shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docllm.cli.common import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_NOT_RUNNING, EXIT_USAGE
from docllm.cli.main import COMMANDS, main
from tests.integration.cli.conftest import Cli, words

WITH_JSON = sorted(" ".join(c.path) for c in COMMANDS if any("--json" in a.flags for a in c.args))

PIPELINE = "pipeline_cmds.py (owned elsewhere) does not yet raise CliError / print JSON on this path"


@pytest.fixture(scope="module")
def ingested(rt, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("json")
    (root / "guide.md").write_text(f"# Guide\n\n## Part\n\njsonword {words('json')}\n", encoding="utf-8")
    assert main(["--data-dir", str(rt.data_dir), "ingest", str(root), "--service", "js", "--json"]) == 0
    return "js/guide.md"


@pytest.fixture(scope="module")
def devset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("devset") / "q.jsonl"
    path.write_text(json.dumps({"question": "jsonword", "expected_doc_keys": ["js/guide.md"]}) + "\n")
    return path


def success_cases(devset: Path) -> dict[str, list[str]]:
    return {
        "status": ["status"],
        "events tail": ["events", "tail", "-n", "3"],
        "dlq redrive": ["dlq", "redrive", "IngestQueue"],
        "dlq purge": ["dlq", "purge", "IngestQueue", "--yes"],
        "jobs": ["jobs"],
        "ingest": ["ingest", str(devset), "--service", "js2", "--no-wait"],
        "docs": ["docs"],
        "chunks": ["chunks", "js/guide.md"],
        "dedup-log": ["dedup-log"],
        "search": ["search", "jsonword"],
        "dataset list": ["dataset", "list"],
        "models": ["models"],
        "benchmarks list": ["benchmarks", "list"],
        "endpoints": ["endpoints"],
        "eval retrieval": ["eval", "retrieval", str(devset)],
        "alarms": ["alarms"],
        "incidents": ["incidents"],
        "canary runs": ["canary", "runs"],
        "families": ["families"],
        "pipeline status": ["pipeline", "status"],
        "retriever list": ["retriever", "list"],
    }


#: (argv, exit code) of a failure of each verb on a running platform.
FAILURES: dict[str, tuple[list[str], int]] = {
    "status": (["status", "--events", "-1"], EXIT_USAGE),
    "events tail": (["events", "tail", "-n", "0"], EXIT_USAGE),
    "dlq redrive": (["dlq", "redrive", "Bogus"], EXIT_NOT_FOUND),
    "dlq purge": (["dlq", "purge", "Bogus", "--yes"], EXIT_NOT_FOUND),
    "jobs": (["jobs", "--bogus"], EXIT_USAGE),
    "ingest": (["ingest", "/no/such/dir", "--service", "js"], EXIT_NOT_FOUND),
    "docs": (["docs", "--status", "bogus"], EXIT_USAGE),
    "chunks": (["chunks", "js/no-such.md"], EXIT_NOT_FOUND),
    "dedup-log": (["dedup-log", "--bogus"], EXIT_USAGE),
    "search": (["search", "jsonword", "--service", "nosuchservice"], EXIT_USAGE),
    "dataset build": (["dataset", "build", "--family", "nope"], EXIT_USAGE),
    "dataset list": (["dataset", "list", "--bogus"], EXIT_USAGE),
    "dataset show": (["dataset", "show", "ds-nope"], EXIT_NOT_FOUND),
    "dataset diff": (["dataset", "diff", "ds-a", "ds-b"], EXIT_NOT_FOUND),
    "train": (["train", "--model-family", "nope"], EXIT_USAGE),
    "models": (["models", "--bogus"], EXIT_USAGE),
    "generate": (["generate", "hi", "--model", "no-such-model"], EXIT_NOT_FOUND),
    "eval retrieval": (["eval", "retrieval", "/no/such/devset.jsonl"], EXIT_NOT_FOUND),
    "model show": (["model", "show", "no-such-model"], EXIT_NOT_FOUND),
    "approve": (["approve", "no-such-model", "--reason", "looks right"], EXIT_NOT_FOUND),
    "reject": (["reject", "no-such-model", "--reason", "looks wrong"], EXIT_NOT_FOUND),
    "eval run": (["eval", "run", "no-such-model"], EXIT_NOT_FOUND),
    "benchmarks add": (["benchmarks", "add", "/no/such/bench.jsonl"], EXIT_NOT_FOUND),
    "benchmarks list": (["benchmarks", "list", "--bogus"], EXIT_USAGE),
    "lineage": (["lineage", "no-such-model"], EXIT_NOT_FOUND),
    "manifest verify": (["manifest", "verify", "no-such-model"], EXIT_NOT_FOUND),
    "manifest show": (["manifest", "show", "no-such-model"], EXIT_NOT_FOUND),
    "ask": (["ask", "how do I enable versioning?"], EXIT_FAILED),  # nothing deployed: 503, said plainly
    "deploy": (["deploy", "no-such-model"], EXIT_NOT_FOUND),
    "endpoints": (["endpoints", "--bogus"], EXIT_USAGE),
    "alarms": (["alarms", "--bogus"], EXIT_USAGE),
    "incidents": (["incidents", "--bogus"], EXIT_USAGE),
    "incident show": (["incident", "show", "no-such-incident"], EXIT_NOT_FOUND),
    "incident close": (["incident", "close", "no-such-incident", "--cause", "c"], EXIT_NOT_FOUND),
    "canary run": (["canary", "run"], EXIT_NOT_FOUND),
    "canary runs": (["canary", "runs", "--limit", "0"], EXIT_USAGE),
    "canary set": (["canary", "set", "/no/such.jsonl"], EXIT_NOT_FOUND),
    "canary unset": (["canary", "unset"], EXIT_NOT_FOUND),
    "demo": (["demo", "--corpus", "/no/such/corpus"], EXIT_USAGE),
    "families": (["families", "--bogus"], EXIT_USAGE),
    "pipeline run": (["pipeline", "run", "no-such-family"], EXIT_USAGE),
    "pipeline status": (["pipeline", "status", "--bogus"], EXIT_USAGE),
    "pipeline cancel": (["pipeline", "cancel", "smoke"], EXIT_NOT_FOUND),  # no run in progress
    "retriever list": (["retriever", "list", "--bogus"], EXIT_USAGE),
    "retriever show": (["retriever", "show", "enc-no-such"], EXIT_NOT_FOUND),
    "retriever train": (["retriever", "train", "--tokenizer", "tok-no-such"], EXIT_NOT_FOUND),
    "retriever verify": (["retriever", "verify", "enc-no-such"], EXIT_NOT_FOUND),
}

#: Verbs that need no running platform: ``families`` reads the families file, ``demo`` starts one.
NO_PLATFORM_NEEDED = {"families", "demo"}

PIPELINE_GAPS: set[str] = set()  # every verb raises CliError on failure now


def test_the_tables_cover_every_verb_with_json():
    assert sorted(FAILURES) == WITH_JSON
    assert set(success_cases(Path("x"))) | {
        "dataset build",
        "dataset show",
        "dataset diff",
        "train",
        "generate",
        # Need a trained, evaluated model: tests/e2e/test_model_gate_flow.py runs each with --json.
        "model show",
        "approve",
        "reject",
        "eval run",
        "benchmarks add",
        "lineage",
        "manifest verify",
        "manifest show",
        "ask",  # needs a deployed model: tests/e2e/test_model_gate_flow.py
        "deploy",
        "incident show",  # needs an incident: tests/integration/runtime/test_kill_points_rollback.py
        "incident close",
        "canary run",  # needs a deployed model: tests/unit/service_layer/test_canary_commands.py
        "canary set",
        "canary unset",
        "demo",  # the whole lifecycle: tests/e2e/test_demo.py runs it with --json
        "pipeline run",  # trains: tests/e2e/test_continuous_training.py
        "pipeline cancel",
        "retriever show",  # needs a trained retriever (a training job): its failure shapes are tested here
        "retriever train",
        "retriever verify",  # needs an approved retriever: tests/integration/service_layer/test_retriever_stage.py
    } == set(WITH_JSON)


@pytest.mark.parametrize("verb", sorted(success_cases(Path("x"))))
def test_success_prints_valid_json(cli: Cli, ingested, devset, verb):
    r = cli(*success_cases(devset)[verb], "--json")
    assert r.code == 0, r.err
    r.json()


@pytest.mark.parametrize("verb", WITH_JSON)
def test_failure_prints_a_json_error_and_a_non_zero_code(cli: Cli, ingested, verb, request):
    if verb in PIPELINE_GAPS:
        request.applymarker(pytest.mark.xfail(reason=PIPELINE, strict=False))
    argv, code = FAILURES[verb]
    r = cli(*argv, "--json")
    assert r.code == code, r.err
    body = r.json()
    assert set(body) == {"error"} and body["error"], body


@pytest.mark.parametrize("verb", [v for v in WITH_JSON if v not in NO_PLATFORM_NEEDED])
def test_a_platform_that_is_not_running_is_a_json_error(tmp_path, capsys, verb):
    required = {
        "ingest": [str(tmp_path), "--service", "s"],
        "chunks": ["d"],
        "search": ["q"],
        "eval retrieval": ["f"],
        "dlq redrive": ["Q"],
        "dlq purge": ["Q"],
        "dataset show": ["v"],
        "dataset diff": ["a", "b"],
        "train": ["--model-family", "smoke"],
        "generate": ["hello", "--model", "m"],
        "model show": ["m"],
        "approve": ["m", "--reason", "r"],
        "reject": ["m", "--reason", "r"],
        "eval run": ["m"],
        "benchmarks add": ["f"],
        "lineage": ["m"],
        "manifest verify": ["m"],
        "manifest show": ["m"],
        "ask": ["q"],
        "deploy": ["m"],
        "incident show": ["i"],
        "incident close": ["i", "--cause", "c"],
        "canary set": ["f"],
        "pipeline run": ["smoke"],
        "pipeline cancel": ["smoke"],
        "retriever show": ["enc-x"],
        "retriever verify": ["enc-x"],
    }
    capsys.readouterr()
    code = main(["--data-dir", str(tmp_path / "none"), *verb.split(), *required.get(verb, []), "--json"])
    assert code == EXIT_NOT_RUNNING
    assert "docllm up" in json.loads(capsys.readouterr().out)["error"]


def test_events_tail_follow_streams_one_json_per_line_and_plain_tail_is_one_document(cli: Cli, ingested):
    events = cli("events", "tail", "-n", "3", "--json").json()
    assert isinstance(events, list) and len(events) == 3
    assert all("detail-type" in e for e in events)
