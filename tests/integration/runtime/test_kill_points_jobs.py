"""A crash between any two side effects of the job-completion stage loses nothing: a completed
tokenizer job's "Training Job State Change" (AWS's real sample, renamed to a job of ours) is
handled through the real JobEvents handler, killed after and before every side effect, then
recovered: the job ends Completed, the tokenizer is recorded, "Tokenizer Trained" is published."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform, reset_platforms
from docllm.faults import FaultInjector, parse_faults
from docllm.records import JOBS_PK, JobRecord
from docllm.runtime.local import LocalRuntime
from docllm.service_layer.outbox import pending
from docllm.tokenizer.artifacts import TOKENIZERS_PK
from tests.support.kill_points import drain_queue, kill_at_every_point, runtime

QUEUE = "JobEventsQueue"
JOB = "docllm-dev-tokenizer-0123456789abcdef-1"


def drain(rt: LocalRuntime) -> None:
    drain_queue(rt, QUEUE)


def snapshot(p: Platform) -> dict[str, Any]:
    job = p.state.get(JOBS_PK, JOB) or {}
    trained = {
        e.body["detail"]["tokenizer_version"] for e in p.event_log.last(50) if e.detail_type == "Tokenizer Trained"
    }
    return {
        "job": job.get("status"),
        "tokenizer": (p.state.get(TOKENIZERS_PK, "tok-1") or {}).get("artifacts_uri"),
        "announced": sorted(trained),
        "outbox": len(pending(p)),
        "dead": [d.reason[:300] for d in p.local_queue.dead_letters(QUEUE)],
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, real_events_dir: Path) -> tuple[Path, dict[str, Any], int]:
    base = tmp_path_factory.mktemp("job-kill-points") / "base"
    rt = runtime(base)
    p = rt.platform
    assert p is not None
    output = f"s3://{p.settings.artifact_bucket}/tokenizers/tok-1/"
    record = JobRecord(
        name=JOB,
        stage="tokenizer",
        output_uri=output,
        context={"dataset_version": "ds-1", "tokenizer_version": "tok-1", "request_id": "req-1"},
    )
    p.state.put(JOBS_PK, JOB, record.model_dump(mode="json"))
    result = {
        "version": "tok-1",
        "dataset_version": "ds-1",
        "vocab_size": 512,
        "model_type": "bpe",
        "model_sha256": "0" * 64,
        "files": ["tokenizer.model"],
        "eos_id": 2,
        "bos_id": 1,
        "pad_id": 3,
        "unk_id": 0,
        "training_seconds": 1.0,
    }
    p.objects.put(p.settings.artifact_bucket, "tokenizers/tok-1/result.json", json.dumps(result).encode())
    event = json.loads((real_events_dir / "awsdocs/sagemaker-training-job-state-change.json").read_text())
    event["detail"]["TrainingJobName"] = JOB
    event["detail"]["TrainingJobStatus"] = "Completed"
    p.local_queue.send(QUEUE, json.dumps(event))
    reset_platforms()
    reference = base.parent / "reference"
    shutil.copytree(base, reference)
    counter = FaultInjector(parse_faults("", trace=str(base.parent / "trace.tsv")))
    rt = runtime(reference, counter)
    drain(rt)
    assert rt.platform is not None
    expected = snapshot(rt.platform)
    reset_platforms()
    assert expected == {"job": "Completed", "tokenizer": output, "announced": ["tok-1"], "outbox": 0, "dead": []}
    return base, expected, counter.side_effects


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_kill_at_any_side_effect_of_a_job_completion_then_recovery_completes_it_once(scenario, tmp_path, when):
    base, expected, total = scenario
    assert total >= 3
    kill_at_every_point(base, tmp_path, total, when, drain, snapshot, expected)


def test_a_completed_job_whose_result_is_unusable_fails_its_stage_with_the_reason(tmp_path, real_events_dir):
    rt = runtime(tmp_path / "bad")
    p = rt.platform
    assert p is not None
    record = JobRecord(
        name=JOB,
        stage="tokenizer",
        output_uri=f"s3://{p.settings.artifact_bucket}/tokenizers/bad/",
        context={"request_id": "req-9"},
    )
    p.state.put(JOBS_PK, JOB, record.model_dump(mode="json"))
    p.objects.put(p.settings.artifact_bucket, "tokenizers/bad/result.json", b'{"version": "x"}')
    event = json.loads((real_events_dir / "awsdocs/sagemaker-training-job-state-change.json").read_text())
    event["detail"].update(TrainingJobName=JOB, TrainingJobStatus="Completed")
    p.local_queue.send(QUEUE, json.dumps(event))
    drain(rt)
    assert p.state.get(JOBS_PK, JOB)["status"] == "Failed"
    (failed,) = [e.body["detail"] for e in p.event_log.last(10) if e.detail_type == "Stage Failed"]
    assert failed["request_id"] == "req-9" and "unusable" in failed["reason"]
    reset_platforms()
