"""Training to a verifiable decision on the local platform, by events only:

"Model Trained" → evaluation job → "Evaluation Completed" → gate (rules vs the champion) → registry
status → "SageMaker Model Package State Change" → champion alias + signed, chained manifest →
"Model Approved" / "Model Rejected". Then: a custom benchmark uploaded through the bucket, a model
with scrambled weights (rejected, champion unchanged), a model trained longer on the same data (the
new champion), a person's override, `manifest verify` and `lineage`.
"""

from __future__ import annotations

import getpass
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docllm.cli.main import main
from docllm.dataset.versions import assign_split
from docllm.events.contracts import ModelTrained, TrainingRequested, to_bus
from docllm.ports.inference import GenerationParams
from docllm.ports.objects import split_uri
from docllm.records import JOBS_PK, JobRecord
from docllm.runtime.local import LocalRuntime
from docllm.service_layer.jobs import MODELS_PK
from tests.conftest import REPO

pytestmark = pytest.mark.slow
DECIDED = ("Model Approved", "Model Rejected")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path_factory.mktemp("platform"), template=REPO / "template.yaml", port=0, auth=False)
    rt.start()
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    """What the ordered tests below hand on to each other."""
    return {}


FEATURES = ["versioning", "logging", "tagging", "replication", "encryption", "inventory", "lifecycle", "metrics"]
ACTIONS = ["enable", "review", "suspend", "update", "export", "audit"]
REGIONS = ["Paris", "Ohio", "Tokyo", "Sydney", "Mumbai", "Oregon", "Dublin", "Seoul", "Milan"]


def _corpus(folder: Path) -> Path:
    """Original pages about a storage service, named so that some land in the test and validation
    splits (the split is a hash of the key): training validates, the evaluation has held-out documents.
    Every page combines one small vocabulary in its own way (no two paragraphs alike, so nothing is a
    duplicate or boilerplate), so a held-out page is predictable from the training pages: a model that
    trains longer does better on it instead of memorising names."""
    folder.mkdir()
    topics = [f"topic-{i}" for i in range(400)]
    in_test = [t for t in topics if assign_split(f"s3/{t}.md") == "test"][:4]
    in_validation = [t for t in topics if assign_split(f"s3/{t}.md") == "validation"][:2]
    in_train = [t for t in topics if assign_split(f"s3/{t}.md") == "train"][:30]
    for i, topic in enumerate(in_test + in_validation + in_train):
        feature, other = FEATURES[i % len(FEATURES)], FEATURES[(i // len(FEATURES) + i + 1) % len(FEATURES)]
        body = [f"# Bucket {feature} in {REGIONS[i % len(REGIONS)]}", ""]
        for j, action in enumerate(ACTIONS):
            region = REGIONS[(i + 2 * j) % len(REGIONS)]
            body += [
                f"## {action.title()} {feature} in {region}",
                "",
                f"To {action} {feature} on a bucket in {region}, open the Amazon S3 console, choose the bucket, "
                f"and call PutBucket{feature.title()} with the --bucket flag. Then {action} {other} for the "
                f"buckets in {REGIONS[(i + j) % len(REGIONS)]} the same way; each bucket keeps up to "
                f"{100 * (j + 1)} {feature} rules.",
                "",
            ]
        (folder / f"{topic}.md").write_text("\n".join(body))
    return folder


def _cli(capsys: pytest.CaptureFixture[str], runtime: LocalRuntime, *args: str) -> Any:
    capsys.readouterr()
    code = main(["--data-dir", str(runtime.data_dir), *args, "--json"])
    captured = capsys.readouterr().out
    assert code == 0, captured
    return json.loads(captured)


def _wait(runtime: LocalRuntime, request_id: str, types: tuple[str, ...], timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in runtime.platform.event_log.since(0):
            detail = e.body.get("detail") or {}
            if detail.get("request_id") == request_id and e.detail_type in (*types, "Stage Failed"):
                assert e.detail_type != "Stage Failed", detail
                return e.body
        time.sleep(0.3)
    raise AssertionError(f"no {types} for request {request_id}")


def test_training_flows_through_evaluation_and_the_gate_to_a_decision(runtime, tmp_path, capsys, state):
    p = runtime.platform
    _cli(capsys, runtime, "ingest", str(_corpus(tmp_path / "docs")), "--service", "s3")
    decided = _cli(capsys, runtime, "train", "--model-family", "smoke", "--timeout", "900")
    assert decided["detail-type"] == "Model Approved", decided
    first = decided["detail"]
    assert first["decided_by"] == "gate" and first["champion"] == first["model_version"]
    assert first["manifest_uri"] and first["manifest_sha256"]
    chain = [e.detail_type for e in p.event_log.since(0) if (e.body.get("detail") or {}).get("request_id")]
    for earlier, later in [("Model Trained", "Evaluation Completed"), ("Evaluation Completed", "Model Approved")]:
        assert chain.index(earlier) < chain.index(later)
    models = _cli(capsys, runtime, "models", "--family", "smoke")
    (row,) = models
    assert row["status"] == "Approved" and row["aliases"] == ["champion"]
    evaluation = row["evaluation"]
    for metric in ("perplexity", "next_token_accuracy", "qa_exact_match", "qa_token_f1", "heldout_loss"):
        assert metric in evaluation["metrics"]
    bucket, key = split_uri(evaluation["html_uri"])
    html = p.objects.get(bucket, key).decode()
    assert 'data-plot="loss"' in html and 'data-plot="metrics"' in html
    state["first"] = first["model_version"]
    state["html"] = html


def test_the_approved_champion_is_deployed_by_the_event_and_answers_questions(runtime, capsys, state):
    p = runtime.platform
    deployed = _wait_type(runtime, "Model Deployed", lambda d: d["model_version"] == state["first"])
    assert deployed["target"] == "local" and deployed["previous_version"] is None
    endpoints = _cli(capsys, runtime, "endpoints")
    (local,) = [e for e in endpoints["endpoints"] if e["target"] == "local"]
    assert local["model_version"] == state["first"]
    answer = _cli(capsys, runtime, "ask", "How do I enable bucket versioning?")
    assert answer["model_version"] == state["first"]
    # Never an answer without citations: a model this small abstains more often than it answers.
    assert answer["abstained"] or answer["citations"]
    lineage = _cli(capsys, runtime, "lineage", state["first"])
    assert [d["target"] for d in lineage["deployments"]] == ["local"]
    assert p.engines.current()["model_version"] == state["first"]


def _wait_type(runtime: LocalRuntime, detail_type: str, match: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in runtime.platform.event_log.since(0):
            if e.detail_type == detail_type and match(e.body["detail"]):
                return dict(e.body["detail"])
        time.sleep(0.3)
    raise AssertionError(f"no {detail_type}")


def test_the_report_renders_with_its_plots_in_headless_chromium(state, tmp_path):
    if "html" not in state:
        pytest.skip("the flow test did not run")
    from tests.support.browser import open_page

    with open_page(state["html"], tmp_path) as page:
        assert page.locator('figure[data-plot="loss"] [data-series="train"]').count() >= 1
        assert page.locator('figure[data-plot="loss"] [data-series="validation"]').count() >= 1
        box = page.locator('figure[data-plot="loss"] svg').first.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50


def test_a_benchmark_uploaded_through_the_bucket_appears_in_the_next_evaluation(runtime, tmp_path, capsys, state):
    bench = tmp_path / "storage-facts.jsonl"
    rows = [
        {"prompt": "To enable versioning on a bucket, open the Amazon S3", "expected": "console", "tags": ["console"]},
        {"prompt": "Each bucket keeps up to", "expected": "100 versioning rules", "metric": "token_f1"},
    ]
    bench.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    added = _cli(capsys, runtime, "benchmarks", "add", str(bench))
    assert added["uploaded"] == ["benchmarks/storage-facts.jsonl"]
    ran = _cli(capsys, runtime, "eval", "run", state["first"], "--timeout", "600")
    assert ran["decision"]["detail-type"] in DECIDED
    bucket, key = split_uri(ran["evaluation"]["report_uri"])
    report = json.loads(runtime.platform.objects.get(bucket, key))
    (result,) = [b for b in report["benchmarks"] if b["source_key"].endswith("storage-facts.jsonl")]
    assert result["items"] == 2 and result["error"] is None and result["metrics"]


def _scrambled_copy(runtime: LocalRuntime, version: str) -> str:
    """A model version whose weights are the champion's, each tensor's values shuffled."""
    import torch
    from safetensors.torch import load, save

    p = runtime.platform
    model = p.state.get(MODELS_PK, version)
    assert model is not None
    job = JobRecord.model_validate(p.state.get(JOBS_PK, model["job"]))
    new_version = f"{version}-scrambled"
    bucket, prefix = split_uri(job.output_uri)
    new_prefix = prefix.replace(version, new_version)
    gen = torch.Generator().manual_seed(0)
    for info in p.objects.list(bucket, prefix):
        body = p.objects.get(bucket, info.key)
        if info.key.endswith("model.safetensors"):
            tensors = load(body)
            tensors = {
                k: t.flatten()[torch.randperm(t.numel(), generator=gen)].reshape(t.shape) for k, t in tensors.items()
            }
            body = save(tensors, metadata={"format": "pt"})
        elif info.key.endswith("result.json"):
            body = body.replace(version.encode(), new_version.encode())
        p.objects.put(bucket, new_prefix + info.key[len(prefix) :], body)
    fake_job = f"{model['job']}-scrambled"
    record = job.model_copy(update={"name": fake_job, "output_uri": f"s3://{bucket}/{new_prefix}"})
    p.state.put(JOBS_PK, fake_job, record.model_dump(mode="json"))
    export_uri = f"s3://{bucket}/{new_prefix}hf/"
    p.state.put(MODELS_PK, new_version, {**model, "version": new_version, "job": fake_job, "export_uri": export_uri})
    return new_version


def test_a_model_with_scrambled_weights_is_rejected_and_the_champion_stays(runtime, state):
    p = runtime.platform
    version = _scrambled_copy(runtime, state["first"])
    model = p.state.get(MODELS_PK, version)
    assert model is not None
    trained = ModelTrained(
        model_version=version,
        family="smoke",
        job_name=model["job"],
        dataset_version=model["dataset_version"],
        tokenizer_version=model["tokenizer_version"],
        export_uri=model["export_uri"],
        metrics=model["metrics"],
        request_id=f"scrambled-{version}",
    )
    p.bus.publish([to_bus(trained)])
    body = _wait(runtime, trained.request_id or "", DECIDED)
    assert body["detail-type"] == "Model Rejected"
    detail = body["detail"]
    assert any("✗" in r or "fail" in r.lower() for r in detail["reasons"]), detail["reasons"]
    assert detail["champion"] == state["first"]
    assert p.registry.aliases("smoke")["champion"] == state["first"]
    state["scrambled"] = version


def test_the_deployer_refuses_a_model_the_registry_holds_as_rejected(runtime, capsys, state):
    capsys.readouterr()
    code = main(["--data-dir", str(runtime.data_dir), "deploy", state["scrambled"], "--target", "local", "--json"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert code != 0 and "Rejected" in error and "only Approved versions deploy" in error
    assert runtime.platform.engines.current()["model_version"] == state["first"]


def test_a_model_trained_longer_on_the_same_data_becomes_champion(runtime, state):
    p = runtime.platform
    first = p.state.get(MODELS_PK, state["first"])
    assert first is not None
    request = TrainingRequested(
        family="smoke",
        dataset_version=first["dataset_version"],
        tokenizer_version=first["tokenizer_version"],
        train_config={"max_tokens": 24000, "max_minutes": 10},  # the family caps a run at 1 minute
    )
    # Requests keep running through the whole retraining and the swap of the served version.
    stop, served, failures = threading.Event(), [], []

    def keep_asking() -> None:
        engine = p.inference
        while not stop.is_set():
            try:
                served.append(engine.generate("To enable versioning", GenerationParams(max_tokens=4)).model)
            except Exception as e:
                failures.append(f"{type(e).__name__}: {e}")
            time.sleep(0.05)

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    try:
        p.bus.publish([to_bus(request)])
        body = _wait(runtime, request.request_id, DECIDED, timeout=900)
        assert body["detail-type"] == "Model Approved", body["detail"]["reasons"]
        detail = body["detail"]
        assert detail["champion"] == detail["model_version"] != state["first"]
        assert detail["previous_champion"] == state["first"]
        deployed = _wait_type(runtime, "Model Deployed", lambda d: d["model_version"] == detail["model_version"])
        assert deployed["previous_version"] == state["first"]
        time.sleep(2)  # requests after the swap reach the new engine
    finally:
        stop.set()
        asker.join(30)
    assert failures == []
    assert served[0] == state["first"] and served[-1] == detail["model_version"]
    state["second"] = detail["model_version"]


def test_a_person_rejects_the_champion_and_the_previous_one_returns(runtime, capsys, state):
    body = _cli(
        capsys,
        runtime,
        "reject",
        state["second"],
        "--reason",
        "answers cite the wrong bucket limits",
    )
    assert body["detail-type"] == "Model Rejected"
    d = body["detail"]
    me = f"local:{getpass.getuser()}"
    assert d["override"] is True and d["decided_by"] == me
    assert d["reasons"] == ["answers cite the wrong bucket limits"]
    assert d["champion"] == state["first"]
    # The rejected version stops serving: the restored champion is deployed in its place.
    _wait_type(
        runtime,
        "Model Deployed",
        lambda x: x["model_version"] == state["first"] and x["previous_version"] == state["second"],
    )
    assert runtime.platform.engines.current()["model_version"] == state["first"]
    shown = _cli(capsys, runtime, "model", "show", state["second"])
    assert [x["decided_by"] for x in shown["decisions"]] == ["gate", me]


def test_a_persons_rejection_stands_when_the_model_is_evaluated_again(runtime, capsys, state):
    ran = _cli(capsys, runtime, "eval", "run", state["second"], "--timeout", "600")
    decision = ran["decision"]
    assert decision["detail-type"] == "Model Rejected", decision
    assert decision["detail"]["decided_by"] == "gate"
    assert any("a person's decision stands" in r for r in decision["detail"]["reasons"])
    assert runtime.platform.registry.aliases("smoke")["champion"] == state["first"]


def test_every_manifest_verifies_and_the_lineage_reaches_the_documents(runtime, capsys, state):
    for version in (state["first"], state["scrambled"], state["second"]):
        report = _cli(capsys, runtime, "manifest", "verify", version)
        assert report["ok"] is True, report["mismatches"]
    tree = _cli(capsys, runtime, "lineage", state["first"])
    assert len(tree["documents"]) == 36
    assert all(len(d["sha256"]) == 64 for d in tree["documents"])
    assert tree["dataset"]["version"] and tree["tokenizer"]["version"] and tree["shards"]["uri"]
    assert [d["status"] for d in tree["decisions"]][:1] == ["Approved"]
