"""Continuous training on the local platform (issue 17, acceptance (a) and (d)), by events only:

(a) S3 and IAM pages ingested → the 5-minute tick starts both families once → each is evaluated and
    gated (the S3 one deployed, the IAM one, ``deploy: []``, not); ten more S3 pages → the next tick
    retrains the S3 family only, exactly once → evaluation → gate → champion → deployed; its signed
    manifest lists the ten new pages' sha256 and chains the previous champion's manifest; a tick with
    no change starts nothing.
(d) ``docllm pipeline run`` then ``docllm pipeline cancel`` while the run's training job works → the
    job is stopped, the run is marked cancelled, no model of it is registered, no job record stays
    InProgress and nothing lands in a dead-letter queue.

The families (``$DOCLLM_FAMILIES_FILE``) and their gate rules (``$DOCLLM_GATES_FILE``) are the
test's own: smoke-sized models (seconds of training) with no debounce, so that a tick decides at once.
The tick is the template's ``PipelinesSchedule`` input, sent to its target queue as the scheduler
does; the schedule's own clock is slowed (``DOCLLM_SCHEDULE_SCALE``) so that no tick fires unasked.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from docllm.cli.main import main
from docllm.dataset.versions import assign_split
from docllm.records import JOBS_PK, JobRecord
from docllm.runtime.local import LocalRuntime
from docllm.service_layer.jobs import MODELS_PK
from docllm.service_layer.manifest import find_manifest
from docllm.service_layer.pipelines import jobs_of, load_run
from tests.conftest import REPO

pytestmark = pytest.mark.slow

S3, IAM, CANCEL = "ct-s3", "ct-iam", "ct-cancel"
#: The smoke family's training settings (packaged families.yaml): seconds on one CPU.
_SMOKE_TRAIN = (
    "{micro_batch_size: 4, learning_rate: 0.003, warmup_steps: 5, eval_interval: 10, eval_batches: 2, "
    "checkpoint_interval: 20, precision: fp32}"
)
FAMILIES = f"""
version: 1
families:
  {S3}:
    preset: tiny
    block_size: 64
    services: [s3]
    budget: {{tokens: 8000, minutes: 1}}
    instance_type: ml.m5.large
    tokenizer: {{vocab_size: 512}}
    train: {_SMOKE_TRAIN}
    retrain: {{settle_minutes: 0, min_interval_hours: 0}}
    deploy: [default]
  {IAM}:
    preset: tiny
    block_size: 64
    services: [iam]
    budget: {{tokens: 8000, minutes: 1}}
    instance_type: ml.m5.large
    tokenizer: {{vocab_size: 512}}
    train: {_SMOKE_TRAIN}
    retrain: {{settle_minutes: 0, min_interval_hours: 0}}
    deploy: []
  {CANCEL}:
    # Trains for minutes unless stopped: (d) cancels it while its training job works.
    preset: tiny
    block_size: 64
    services: [ec2]
    budget: {{minutes: 5}}
    instance_type: ml.m5.large
    tokenizer: {{vocab_size: 512}}
    train: {_SMOKE_TRAIN}
    retrain: {{on_change: false}}
    deploy: []
"""
# As the smoke family's (packaged gates.yaml): ln(512) = 6.24 is uniform guessing over the 512-token
# vocabulary; a model trained for seconds on the guide's pages reaches about 5.1. The regression rule
# does not apply across dataset versions (the gate compares held-out metrics on the same documents only).
_RULES = "inherit_defaults: false\n    rules: [{metric: heldout_loss, threshold: 6.3, max_regression_rel: 0.05}]"
GATES = f"""
defaults:
  rules:
    - metric: heldout_loss
      threshold: 6.3
families:
  {S3}:
    {_RULES}
  {IAM}:
    {_RULES}
"""
RUN_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    config = tmp_path_factory.mktemp("config")
    (config / "families.yaml").write_text(FAMILIES)
    (config / "gates.yaml").write_text(GATES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCLLM_FAMILIES_FILE", str(config / "families.yaml"))
        mp.setenv("DOCLLM_GATES_FILE", str(config / "gates.yaml"))
        # Every template schedule a thousand times slower: the test sends the pipelines tick itself.
        mp.setenv("DOCLLM_SCHEDULE_SCALE", "1000")
        rt = LocalRuntime(tmp_path_factory.mktemp("platform"), template=REPO / "template.yaml", port=0, auth=False)
        rt.start()
        yield rt
        rt.stop()


# -- helpers ------------------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], runtime: LocalRuntime, *args: str) -> Any:
    capsys.readouterr()
    code = main(["--data-dir", str(runtime.data_dir), *args, "--json"])
    captured = capsys.readouterr().out
    assert code == 0, captured
    return json.loads(captured)


def _seq(runtime: LocalRuntime) -> int:
    assert runtime.platform is not None
    last = runtime.platform.event_log.last(1)
    return last[0].seq if last else 0


def _events(runtime: LocalRuntime, after: int, detail_type: str) -> list[dict[str, Any]]:
    assert runtime.platform is not None
    return [dict(e.body["detail"]) for e in runtime.platform.event_log.since(after) if e.detail_type == detail_type]


def _wait_for(
    runtime: LocalRuntime, after: int, detail_type: str, match: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """The first ``detail_type`` event after ``after`` that ``match``es; a "Stage Failed" of the same
    request fails the test with its reason instead of a time-out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in _events(runtime, after, detail_type):
            if match(d):
                return d
        failed = [d for d in _events(runtime, after, "Stage Failed") if match(d)]
        assert not failed, failed
        time.sleep(0.5)
    raise AssertionError(f"no {detail_type} in {timeout:.0f} s")


def _tick(runtime: LocalRuntime) -> None:
    """What EventBridge Scheduler does every 5 minutes: the schedule's Input, sent to its target queue."""
    assert runtime.platform is not None
    (spec,) = [s for s in runtime.wiring.schedules if s.name == "PipelinesSchedule"]
    assert spec.target == "PipelinesQueue" and spec.input
    runtime.platform.local_queue.send(spec.target, spec.input)


def _run_started(runtime: LocalRuntime, after: int, family: str) -> dict[str, Any]:
    return _wait_for(runtime, after, "Pipeline Run Started", lambda d: d["family"] == family, 60)


def _run_ended(runtime: LocalRuntime, after: int, run_id: str) -> dict[str, Any]:
    return _wait_for(runtime, after, "Pipeline Run Ended", lambda d: d["run_id"] == run_id, RUN_TIMEOUT_S)


def _pages(folder: Path, service: str, count: int, *, skip: set[str], held_out: bool) -> list[Path]:
    """``count`` pages of a guide, 3-8 KB each (a few seconds of training hold several), none of
    ``skip``; with ``held_out``, one in the test split and one in the validation split (the split is a
    hash of the key), so that training validates and the evaluation has a held-out page (one: the
    evaluation's Q&A items come from the test split, and generating their answers is its slow part)."""
    pages = [
        f
        for f in sorted(folder.glob("*.md"))
        if 3000 <= f.stat().st_size <= 8000 and not f.name.startswith(("example_", ".")) and f.name not in skip
    ]
    by_split: dict[str, list[Path]] = {"train": [], "validation": [], "test": []}
    for f in pages:
        by_split[assign_split(f"{service}/{f.name}")].append(f)
    if not held_out:
        return by_split["train"][:count]
    chosen = by_split["test"][:1] + by_split["validation"][:1]
    return chosen + by_split["train"][: count - len(chosen)]


def _copy(pages: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in pages:
        shutil.copyfile(f, folder / f.name)
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _status(capsys: pytest.CaptureFixture[str], runtime: LocalRuntime) -> dict[str, dict[str, Any]]:
    return {row["family"]: row for row in _cli(capsys, runtime, "pipeline", "status")}


# -- (a) new documents retrain only the matching families --------------------------------------------


@pytest.mark.corpus
def test_new_documents_retrain_only_the_matching_family_once_then_gate_and_deploy(
    runtime: LocalRuntime, corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = runtime.platform
    assert p is not None
    s3_guide, iam_guide = corpus_dir / "awsdocs/s3/doc_source", corpus_dir / "awsdocs/iam/doc_source"
    if not (s3_guide.is_dir() and iam_guide.is_dir()):
        pytest.skip("the S3 and IAM guides are not in ../shared/corpus")
    s3_first = _pages(s3_guide, "s3", 12, skip=set(), held_out=True)
    s3_new = _pages(s3_guide, "s3", 10, skip={f.name for f in s3_first}, held_out=False)
    iam_pages = _pages(iam_guide, "iam", 10, skip=set(), held_out=True)
    assert len(s3_first) == 12 and len(s3_new) == 10 and len(iam_pages) == 10

    # First pages of both guides: both families stale, each for its own pages only.
    _cli(capsys, runtime, "ingest", str(_copy(s3_first, tmp_path / "s3-first")), "--service", "s3")
    _cli(capsys, runtime, "ingest", str(_copy(iam_pages, tmp_path / "iam")), "--service", "iam")
    assert runtime.wait_idle(120)
    status = _status(capsys, runtime)
    assert set(status[S3]["stale"]["changes"]) == {f"s3/{f.name}" for f in s3_first}
    assert set(status[IAM]["stale"]["changes"]) == {f"iam/{f.name}" for f in iam_pages}
    assert status[CANCEL]["stale"]["documents"] == 0  # no ec2 page, and it retrains on request only

    before = _seq(runtime)
    _tick(runtime)
    started = {family: _run_started(runtime, before, family) for family in (S3, IAM)}
    assert started[S3]["trigger"] == started[IAM]["trigger"] == "change"
    assert (started[S3]["documents"], started[IAM]["documents"]) == (12, 10)
    ended = {f: _run_ended(runtime, before, d["run_id"]) for f, d in started.items()}
    assert ended[S3]["state"] == "deployed", ended[S3]
    assert ended[IAM]["state"] == "decided" and "not deployed" in ended[IAM]["reason"], ended[IAM]
    first = ended[S3]["model_version"]
    iam_champion = ended[IAM]["model_version"]
    assert p.registry.aliases(S3)["champion"] == first
    assert p.registry.aliases(IAM)["champion"] == iam_champion  # approved, champion, never deployed
    assert (p.engines.current() or {}).get("model_version") == first
    assert not [d for d in _events(runtime, before, "Model Deployed") if d["model_version"] == iam_champion]
    first_manifest = find_manifest(p, first)
    first_approved = _wait_for(runtime, 0, "Model Approved", lambda d: d["model_version"] == first, 10)

    # Ten more S3 pages: the S3 family alone is stale, for exactly those ten.
    _cli(capsys, runtime, "ingest", str(_copy(s3_new, tmp_path / "s3-new")), "--service", "s3")
    assert runtime.wait_idle(120)
    status = _status(capsys, runtime)
    new_keys = {f"s3/{f.name}" for f in s3_new}
    assert set(status[S3]["stale"]["changes"]) == new_keys
    assert {c["change"] for c in status[S3]["stale"]["changes"].values()} == {"added"}
    assert status[IAM]["stale"]["documents"] == 0 and status[IAM]["stage"] == "idle"

    before = _seq(runtime)
    _tick(runtime)
    run = _run_started(runtime, before, S3)
    assert run["documents"] == 10 and run["trigger"] == "change"
    end = _run_ended(runtime, before, run["run_id"])
    assert end["state"] == "deployed", end
    second = end["model_version"]
    assert second != first
    assert runtime.wait_idle(120)
    # Exactly one run, of the S3 family only; the IAM family's chain never started again.
    assert [d["family"] for d in _events(runtime, before, "Pipeline Run Started")] == [S3]
    assert [d["family"] for d in _events(runtime, before, "Training Requested")] == [S3]
    assert not [d for d in _events(runtime, before, "Model Trained") if d["family"] == IAM]
    record = load_run(p, run["run_id"])
    assert record is not None and set(record.staleness.documents) == new_keys
    # Evaluated, gated (approved by the gate, the new champion), deployed in place of the first.
    approved = _wait_for(runtime, before, "Model Approved", lambda d: d["model_version"] == second, 10)
    assert approved["decided_by"] == "gate" and approved["champion"] == second
    assert approved["previous_champion"] == first
    assert _events(runtime, before, "Evaluation Completed")[0]["model_version"] == second
    deployed = _wait_for(runtime, before, "Model Deployed", lambda d: d["model_version"] == second, 10)
    assert deployed["previous_version"] == first
    assert (p.engines.current() or {}).get("model_version") == second

    # The new champion's manifest lists the ten new pages by content hash and chains the previous one.
    shown = _cli(capsys, runtime, "manifest", "show", second)
    build = shown["statement"]["predicate"]["buildDefinition"]
    documents = {
        d["name"]: d["digest"]["sha256"]
        for d in build["resolvedDependencies"]
        if d.get("annotations", {}).get("kind") == "document"
    }
    assert {f"s3/{f.name}": _sha256(f) for f in s3_new}.items() <= documents.items()
    assert len(documents) == 22 and not [k for k in documents if not k.startswith("s3/")]
    chain = build["internalParameters"]["chain"]
    assert chain["family"] == S3
    assert chain["previous_sha256"] == first_manifest.sha256 == first_approved["manifest_sha256"]
    assert chain["sequence"] == first_manifest.sequence + 1
    assert _cli(capsys, runtime, "manifest", "verify", second)["ok"] is True

    # A tick with nothing changed starts nothing.
    before = _seq(runtime)
    _tick(runtime)
    assert runtime.wait_idle(60)
    assert _events(runtime, before, "Pipeline Run Started") == []
    assert _events(runtime, before, "Training Requested") == []
    status = _status(capsys, runtime)
    assert {f: (r["stage"], r["stale"]["documents"]) for f, r in status.items()} == {
        S3: ("idle", 0),
        IAM: ("idle", 0),
        CANCEL: ("idle", 0),
    }
    assert status[S3]["last_run"]["state"] == "deployed" and status[S3]["last_run"]["model_version"] == second


# -- (d) a cancelled run leaves no half-registered model -----------------------------------------------


FEATURES = ["instances", "volumes", "snapshots", "images", "key pairs", "security groups", "placement groups"]
ACTIONS = ["launch", "stop", "resize", "tag", "describe", "copy"]


def _ec2_pages(folder: Path) -> Path:
    """Original EC2-style pages (no corpus needed): enough text for a 512-token tokenizer, named so that
    the validation and test splits (a hash of the key) are not empty."""
    folder.mkdir()
    names = [f"ec2-page-{n}" for n in range(400)]
    chosen = [n for n in names if assign_split(f"ec2/{n}.md") == "validation"][:2]
    chosen += [n for n in names if assign_split(f"ec2/{n}.md") == "test"][:2]
    chosen += [n for n in names if assign_split(f"ec2/{n}.md") == "train"][:12]
    for i, name in enumerate(chosen):
        feature = FEATURES[i % len(FEATURES)]
        body = [f"# Working with {feature} ({i})", ""]
        for j, action in enumerate(ACTIONS):
            other = FEATURES[(i + j + 1) % len(FEATURES)]
            body += [
                f"## {action.title()} {feature} in zone {i}-{j}",
                "",
                f"To {action} {feature} in availability zone {i}-{j}, open the Amazon EC2 console, choose "
                f"{feature.title()}, and call the {action.title()} action; then {action} the {other} attached "
                f"to them the same way. Each account keeps up to {10 * (i + j + 1)} {feature} per zone.",
                "",
            ]
        (folder / f"{name}.md").write_text("\n".join(body))
    return folder


def test_a_run_cancelled_while_training_leaves_no_model_and_no_running_job(
    runtime: LocalRuntime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = runtime.platform
    assert p is not None
    _cli(capsys, runtime, "ingest", str(_ec2_pages(tmp_path / "ec2")), "--service", "ec2")
    assert runtime.wait_idle(120)
    before = _seq(runtime)
    started = _cli(capsys, runtime, "pipeline", "run", CANCEL, "--timeout", "120")
    run_id = started["run_id"]
    assert started["family"] == CANCEL and started["trigger"] == "manual"

    # Once the run's training job trains (dataset, tokenizer and shards came first): `docllm status` shows
    # the loss it reports, so the stop reaches a training loop, not a process still importing torch.
    deadline = time.monotonic() + 600
    while True:
        assert time.monotonic() < deadline, "the run's training job never reported a training step"
        assert not _events(runtime, before, "Stage Failed"), _events(runtime, before, "Stage Failed")
        training = [j for j in jobs_of(p, run_id, in_progress=True) if j.stage == "train"]
        jobs = {j["name"]: j for j in _cli(capsys, runtime, "status")["jobs"]}
        if training and "TrainLoss" in (jobs.get(training[0].name, {}).get("progress") or {}):
            break
        time.sleep(0.5)
    (job,) = training
    assert p.jobs.describe(job.name).status == "InProgress"

    ended = _cli(capsys, runtime, "pipeline", "cancel", CANCEL)
    assert ended["run_id"] == run_id and ended["state"] == "cancelled"
    assert ended["stopped_jobs"] == [job.name]

    # The job ends (SIGTERM: it saves a checkpoint and exits) and is recorded Stopped.
    deadline = time.monotonic() + 180
    while p.jobs.describe(job.name).status in ("InProgress", "Stopping") or (
        JobRecord.model_validate(p.state.get(JOBS_PK, job.name)).status == "InProgress"
    ):
        assert time.monotonic() < deadline, "the stopped job never ended"
        time.sleep(0.3)
    assert runtime.wait_idle(120)
    assert JobRecord.model_validate(p.state.get(JOBS_PK, job.name)).status == "Stopped"
    record = load_run(p, run_id)
    assert record is not None and record.state == "cancelled" and record.stopped_jobs == [job.name]

    # Nothing of the run was completed, registered or left running.
    assert [d for d in _events(runtime, before, "Model Trained") if d.get("request_id") == run_id] == []
    assert [item for _, item in p.state.query(MODELS_PK) if item.get("family") == CANCEL] == []
    assert p.registry.list(CANCEL) == []
    assert CANCEL not in {d["family"] for d in _events(runtime, before, "Model Approved")}
    assert [r.name for r in jobs_of(p, run_id) if r.status == "InProgress"] == []
    assert [d for d in _events(runtime, before, "Stage Failed") if d.get("request_id") == run_id] == []
    assert [k for k, item in p.state.query(JOBS_PK) if item.get("status") == "InProgress"] == []
    status = _cli(capsys, runtime, "status")
    assert all(q["dead"] == 0 for q in status["queues"]), status["queues"]
    row = _status(capsys, runtime)[CANCEL]
    assert row["stage"] == "idle" and row["running_jobs"] == [] and row["last_run"]["state"] == "cancelled"
