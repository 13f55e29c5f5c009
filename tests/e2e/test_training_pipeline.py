"""The whole flow on the local platform, by events only:

documents → "Dataset Built" → tokenizer job → "Tokenizer Trained" → shards job → "Shards Built"
→ training job → Hugging Face export in the artifact bucket → "Model Trained".
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docllm.cli.main import main
from docllm.ports.jobs import JobSpec
from docllm.ports.objects import split_uri
from docllm.runtime.local import LocalRuntime
from docllm.service_layer.jobs import launch
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "ingest"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    # Deployment is tests/e2e/test_model_gate_flow.py's subject: no engine is started here.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCLLM_DEPLOY_TARGET", "none")
        rt = LocalRuntime(tmp_path_factory.mktemp("platform"), template=REPO / "template.yaml", port=0, auth=False)
        rt.start()
        yield rt
        rt.stop()


def corpus(tmp: Path) -> Path:
    """A small corpus of original text: enough tokens for a tokenizer, a split and a few steps."""
    folder = tmp / "docs"
    folder.mkdir()
    topics = [
        "buckets",
        "objects",
        "versioning",
        "lifecycle",
        "replication",
        "encryption",
        "access points",
        "inventory",
        "batch operations",
        "event notifications",
        "storage classes",
        "object lock",
    ]
    for i, topic in enumerate(topics):
        body = [f"# Working with {topic}", "", f"This page explains {topic} in the storage service."]
        for j in range(6):
            body += [
                "",
                f"## {topic.title()} task {j}",
                "",
                f"To configure {topic} for step {j}, open the console, choose the bucket, and set the "
                f"{topic} option. The setting applies to new objects; existing objects keep version {j}.",
                "",
                "```",
                f"aws s3api put-{topic.replace(' ', '-')} --bucket amzn-example-{i} --step {j}",
                "```",
            ]
        (folder / f"{topic.replace(' ', '-')}.md").write_text("\n".join(body) + "\n")
    return folder


@pytest.mark.slow
def test_training_a_family_runs_every_stage_by_events_and_exports_a_model(runtime, tmp_path, capsys):
    data = ["--data-dir", str(runtime.data_dir)]
    assert main([*data, "ingest", str(corpus(tmp_path)), "--service", "s3", "--json"]) == 0
    capsys.readouterr()
    start = runtime.platform.event_log.last(1)[0].seq

    assert main([*data, "train", "--model-family", "smoke", "--until", "trained", "--timeout", "600", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["detail-type"] == "Model Trained"
    detail = trained["detail"]

    chain = [e.detail_type for e in runtime.platform.event_log.since(start) if e.source.startswith("docllm.")]
    for earlier, later in zip(
        [
            "Training Requested",
            "Dataset Build Requested",
            "Dataset Built",
            "Tokenizer Trained",
            "Shards Built",
            "Model Trained",
        ],
        ["Dataset Build Requested", "Dataset Built", "Tokenizer Trained", "Shards Built", "Model Trained", None],
        strict=True,
    ):
        assert earlier in chain
        if later:
            assert chain.index(earlier) < chain.index(later)

    bucket, prefix = split_uri(detail["export_uri"])
    files = {o.key[len(prefix) :] for o in runtime.platform.objects.list(bucket, prefix)}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    } <= files
    config = json.loads(runtime.platform.objects.get(bucket, prefix + "config.json"))
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert detail["metrics"]["final_val_loss"] > 0 and detail["metrics"]["tokens_seen"] > 0

    capsys.readouterr()
    assert main([*data, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    # Evaluation and the gate follow "Model Trained" (tests/e2e/test_model_gate_flow.py); not waited for here.
    assert [j["status"] for j in status["jobs"] if "-evaluate-" not in j["name"]] == ["Completed"] * 3
    assert all(q["dead"] == 0 for q in status["queues"])

    capsys.readouterr()
    assert (
        main(
            [
                *data,
                "generate",
                "To configure versioning",
                "--model",
                detail["model_version"],
                "--max-tokens",
                "8",
                "--json",
            ]
        )
        == 0
    )
    generated = json.loads(capsys.readouterr().out)
    assert generated["completion"].strip()

    assert main([*data, "dataset", "list", "--json"]) == 0
    (dataset,) = json.loads(capsys.readouterr().out)
    assert dataset["version"] == detail["dataset_version"]
    assert main([*data, "dataset", "show", dataset["version"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sum(shown["tokens"]["splits"].values()) > 0


@pytest.mark.slow
def test_a_job_with_bad_hyperparameters_ends_as_stage_failed_with_its_reason(runtime):
    p = runtime.platform
    start = max((e.seq for e in p.event_log.last(1)), default=0)
    spec = JobSpec(
        name="docllm-dev-tokenizer-badhyperparams-1",
        image="tokenizer",
        entry_point="docllm.jobs.tokenizer_job",
        hyperparameters={"vocab_size": "many", "output_uri": f"s3://{p.settings.artifact_bucket}/tokenizers/bad/"},
        channels={},
        output_uri=f"s3://{p.settings.artifact_bucket}/tokenizers/bad/",
    )
    assert launch(p, spec, "tokenizer", {"dataset_version": "ds-x", "tokenizer_version": "tok-x"}) == "launched"
    deadline = time.monotonic() + 120
    while True:
        failed = [e for e in p.event_log.since(start) if e.detail_type == "Stage Failed"]
        if failed:
            break
        assert time.monotonic() < deadline, "the failed job never produced Stage Failed"
        time.sleep(0.2)
    assert failed[0].body["detail"]["subject"] == spec.name
    assert "ClientError" in failed[0].body["detail"]["reason"]
    assert p.jobs.describe(spec.name).status == "Failed"


@pytest.mark.slow
def test_asking_again_reuses_tokenizer_and_shards_and_trains_a_new_model(runtime, capsys):
    data = ["--data-dir", str(runtime.data_dir)]
    before = {j.name for j in runtime.platform.jobs.list_jobs()}
    start = runtime.platform.event_log.last(1)[0].seq
    assert main([*data, "train", "--model-family", "smoke", "--until", "trained", "--timeout", "600", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["detail-type"] == "Model Trained"
    new_jobs = [j for j in runtime.platform.jobs.list_jobs() if j.name not in before and "-evaluate-" not in j.name]
    assert [j.name.split("-")[2] for j in new_jobs] == ["train"]  # docllm-<stage>-train-…
    reused = [e.body["detail"] for e in runtime.platform.event_log.since(start) if e.detail_type == "Tokenizer Trained"]
    assert reused and reused[0]["reused"] is True
