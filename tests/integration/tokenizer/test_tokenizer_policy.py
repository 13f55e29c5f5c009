"""Tokenizer policy: coverage of new data, the tokenizer job's reuse-if-covered mode, and the stage's
choice for continue, shared and distill families (no job runs for the stage tests: a recording runner
stands in for SageMaker, and the job's result is written as the job would)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform
from docllm.dataset.versions import DatasetManifest, build_dataset, read_split_file
from docllm.events.contracts import DatasetBuilt, to_bus
from docllm.exceptions import NotFoundError
from docllm.jobs.contract import JobEnvironment, JobInputError
from docllm.jobs.tokenizer_job import main as tokenizer_main
from docllm.ports.jobs import JobDescription, JobRunner, JobSpec
from docllm.records import JOBS_PK, JobRecord
from docllm.registry.models import PackageSpec
from docllm.service_layer import tokenizer as stage
from docllm.service_layer.jobs import MODELS_PK
from docllm.settings import Settings
from docllm.tokenizer.artifacts import TOKENIZERS_PK, TokenizerResult, TokenizerSummary, find_tokenizer
from docllm.tokenizer.coverage import REUSE_IF_COVERED, Coverage, CoverageDecision, decide, measure_coverage
from docllm.tokenizer.encode import SentencePieceTokenizer
from docllm.training.families import FAMILIES_FILE_ENV
from tests.conftest import REPO
from tests.unit.dataset.fakes import DictObjects, DictState, add_document
from tests.unit.tokenizer.corpus import texts

#: Text in a script the English corpus never shows: every letter is byte fallback for its tokenizer.
GREEK = "Ο κάδος αποθηκεύει αντικείμενα· η πολιτική ελέγχει την πρόσβαση στον κάδο και στα αντικείμενα."


def _dataset(root: Path, bodies: list[str]) -> tuple[DatasetManifest, Path]:
    """A dataset version of two chunks per document, laid out as the job's ``dataset`` channel."""
    state, objects = DictState(), DictObjects()
    for i in range(len(bodies) // 2):
        add_document(state, objects, f"s3/doc{i:02d}.md", [bodies[2 * i], bodies[2 * i + 1]])
    manifest, _ = build_dataset(state, objects, artifact_bucket="art")
    channel = root / "input" / "data" / "dataset"
    objects.download_prefix(f"s3://art/datasets/{manifest.version}/", channel)
    return manifest, channel


def _job(root: Path, hp: dict[str, str], channels: list[str]) -> JobEnvironment:
    (root / "input" / "config").mkdir(parents=True, exist_ok=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    return JobEnvironment.from_env({"DOCLLM_SM_PREFIX": str(root), "SM_CHANNELS": json.dumps(channels)})


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer trained on an English corpus (the champion's), its artefacts directory."""
    root = tmp_path_factory.mktemp("champion")
    _dataset(root, texts(80, seed=1))
    env = _job(root, {"vocab_size": "384", "num_threads": "1"}, ["dataset"])
    tokenizer_main(env)
    return env.model_dir


def _greek_bodies() -> list[str]:
    return [f"{GREEK} {GREEK}" if i % 2 else body for i, body in enumerate(texts(80, seed=2))]


# --- coverage ----------------------------------------------------------------------------------


def test_a_tokenizer_covers_text_like_its_own_and_not_a_new_script(english: Path, tmp_path: Path) -> None:
    tok = SentencePieceTokenizer.from_file(english / "tokenizer.model")
    _, same = _dataset(tmp_path / "same", texts(80, seed=2))  # other documents, same kind of text
    _, greek = _dataset(tmp_path / "greek", _greek_bodies())
    covered = measure_coverage(tok, read_split_file(same / "train.jsonl"))
    assert covered.coverage >= 0.99 and covered.tokens > 1000 and covered.unknown == 0
    uncovered = measure_coverage(tok, read_split_file(greek / "train.jsonl"))
    assert uncovered.coverage < 0.8 and uncovered.byte_fallback > 1000
    assert uncovered.coverage == pytest.approx(1 - (uncovered.byte_fallback + uncovered.unknown) / uncovered.tokens)


def test_a_large_split_is_sampled_the_same_way_every_time(english: Path, tmp_path: Path) -> None:
    tok = SentencePieceTokenizer.from_file(english / "tokenizer.model")
    _, channel = _dataset(tmp_path, _greek_bodies())
    path = channel / "train.jsonl"
    size = path.stat().st_size
    a = measure_coverage(tok, read_split_file(path), split_bytes=size, sample_bytes=size // 4)
    b = measure_coverage(tok, read_split_file(path), split_bytes=size, sample_bytes=size // 4)
    full = measure_coverage(tok, read_split_file(path))
    assert a == b
    assert 0 < a.sampled_bytes < full.sampled_bytes and a.total_bytes == full.total_bytes
    assert a.records < full.records and a.tokens < full.tokens  # a sample of records, measured whole


def test_the_decision_names_the_figures() -> None:
    cov = Coverage(coverage=0.95, tokens=8000, unknown=0, byte_fallback=400, records=10, sampled_bytes=1, total_bytes=1)
    kept, why = decide("tok-a", cov, 0.9)
    assert kept and why == "tokenizer tok-a kept: it covers 0.9500 of 8,000 sampled tokens (threshold 0.9)"
    kept, why = decide("tok-a", cov, 0.98)
    assert not kept and "covers only 0.9500" in why and "400 byte fallback" in why and "new tokenizer" in why


# --- the job's reuse-if-covered mode -------------------------------------------------------------


def _reuse_job(root: Path, bodies: list[str], english: Path, min_coverage: str = "0.98") -> JobEnvironment:
    _dataset(root, bodies)
    (root / "input" / "data" / "reuse").symlink_to(english)
    hp = {
        "vocab_size": "512",  # room for the Greek letters beside the English pieces
        "num_threads": "1",
        "mode": REUSE_IF_COVERED,
        "reuse_version": "tok-champion",
        "min_coverage": min_coverage,
    }
    return _job(root, hp, ["dataset", "reuse"])


def test_the_job_keeps_a_tokenizer_that_covers_the_data_and_trains_nothing(english: Path, tmp_path: Path) -> None:
    env = _reuse_job(tmp_path, texts(80, seed=2), english)
    tokenizer_main(env)
    decision = CoverageDecision.model_validate_json((env.model_dir / "result.json").read_text())
    assert decision.reused and decision.candidate_version == "tok-champion" and decision.trained is None
    assert decision.coverage.coverage >= 0.98 and decision.reason.startswith("tokenizer tok-champion kept")
    assert not (env.model_dir / "tokenizer.model").exists()


def test_the_job_trains_a_new_tokenizer_when_coverage_falls_short(english: Path, tmp_path: Path) -> None:
    env = _reuse_job(tmp_path, _greek_bodies(), english)
    tokenizer_main(env)
    decision = CoverageDecision.model_validate_json((env.model_dir / "result.json").read_text())
    assert not decision.reused and decision.trained is not None
    assert "covers only" in decision.reason and "a new tokenizer was trained" in decision.reason
    assert (env.model_dir / "tokenizer.model").exists() and decision.trained.vocab_size == 512
    retrained = SentencePieceTokenizer.from_file(env.model_dir / "tokenizer.model")
    _, greek = _dataset(tmp_path / "again", _greek_bodies())
    assert measure_coverage(retrained, read_split_file(greek / "train.jsonl")).coverage > decision.coverage.coverage


def test_the_job_refuses_reuse_mode_without_its_inputs(tmp_path: Path) -> None:
    _dataset(tmp_path, texts(20, seed=3))
    env = _job(tmp_path, {"mode": REUSE_IF_COVERED, "reuse_version": "tok-x", "min_coverage": "0.9"}, ["dataset"])
    with pytest.raises(JobInputError, match="channel 'reuse'"):
        tokenizer_main(env)
    env = _job(tmp_path, {"mode": "guess"}, ["dataset"])
    with pytest.raises(JobInputError, match="'mode' must be train or reuse-if-covered"):
        tokenizer_main(env)


# --- the stage's choice ----------------------------------------------------------------------------

FAMILIES = """
version: 1
families:
  cont:
    method: continue
    preset: tiny
    budget: {minutes: 2}
    tokenizer: {vocab_size: 384}
    incremental: {min_tokenizer_coverage: 0.97}
  sharing:
    preset: tiny
    budget: {minutes: 2}
    tokenizer_policy: shared
    tokenizer_from: cont
  student:
    method: distill
    preset: tiny
    budget: {minutes: 2}
    distill: {teacher_family: cont}
  adapter:
    method: lora
    preset: tiny
    budget: {minutes: 2}
    lora: {base_family: cont}
"""
CHAMPION, CHAMP_TOK = "cont-m1", "tok-champion"


class RecordingRunner(JobRunner):
    def __init__(self) -> None:
        self.jobs: dict[str, JobSpec] = {}

    def submit(self, spec: JobSpec) -> str:
        self.jobs[spec.name] = spec
        return f"arn:{spec.name}"

    def describe(self, name: str) -> JobDescription:
        if name not in self.jobs:
            raise NotFoundError(name)
        return JobDescription(name=name, status="InProgress")

    def stop(self, name: str) -> None:
        pass


@pytest.fixture
def p(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    (tmp_path / "families.yaml").write_text(FAMILIES, encoding="utf-8")
    monkeypatch.setenv(FAMILIES_FILE_ENV, str(tmp_path / "families.yaml"))
    platform = Platform(
        Settings.from_env({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(tmp_path / "data")}),
        template=REPO / "template.yaml",
    )
    platform.__dict__["jobs"] = RecordingRunner()
    return platform


def _built(p: Platform, family: str) -> dict[str, Any]:
    """A dataset version's manifest in the platform's store (all the stage reads), and its "Dataset Built"."""
    state, objects = DictState(), DictObjects()
    for i, body in enumerate(texts(6, seed=4)):
        add_document(state, objects, f"s3/new{i}.md", [body])
    manifest, _ = build_dataset(state, objects, artifact_bucket="art")
    key = f"datasets/{manifest.version}/manifest.json"
    p.objects.put(p.settings.artifact_bucket, key, objects.get("art", key))
    event = DatasetBuilt(
        dataset_version=manifest.version,
        manifest_uri=f"s3://{p.settings.artifact_bucket}/datasets/{manifest.version}/manifest.json",
        documents=len(manifest.documents),
        chunks=len(manifest.documents),
        added=len(manifest.documents),
        removed=0,
        changed=0,
        family=family,
        train_after=True,
        request_id="req-t",
    )
    return to_bus(event).to_wire()


def _champion(p: Platform, family: str = "cont") -> None:
    art = p.settings.artifact_bucket
    summary = TokenizerSummary(
        version=CHAMP_TOK,
        dataset_version="ds-old",
        artifacts_uri=f"s3://{art}/tokenizers/{CHAMP_TOK}/",
        vocab_size=384,
        model_type="bpe",
        model_sha256="0" * 64,
    )
    p.state.put(TOKENIZERS_PK, CHAMP_TOK, summary.model_dump(mode="json"))
    export = f"s3://{art}/models/{family}/{CHAMPION}/hf/"
    p.state.put(MODELS_PK, CHAMPION, {"version": CHAMPION, "family": family, "export_uri": export,
                                      "tokenizer_version": CHAMP_TOK})  # fmt: skip
    spec = PackageSpec(model_version=CHAMPION, family=family, export_uri=export,
                       report_uri=f"s3://{art}/r.json", report_sha256="0" * 64, evaluation_id="e-1")  # fmt: skip
    p.registry.register(spec)
    p.registry.set_status(CHAMPION, "Approved", "champion of the tokenizer policy tests")
    p.registry.promote(family, CHAMPION)


def _events(p: Platform, detail_type: str) -> list[dict[str, Any]]:
    return [e.body["detail"] for e in p.event_log.last(1000) if e.detail_type == detail_type]


def _jobs(p: Platform) -> dict[str, JobSpec]:
    assert isinstance(p.jobs, RecordingRunner)
    return p.jobs.jobs


def test_a_continue_family_without_a_champion_trains_its_own(p: Platform) -> None:
    out = stage.handle_dataset_built(p, _built(p, "cont"))
    (spec,) = _jobs(p).values()
    assert "mode" not in spec.hyperparameters and "reuse" not in spec.channels
    assert out["outcome"] == "submitted" or out["job"] == spec.name


def test_a_continue_family_with_a_champion_measures_its_tokenizer_first(p: Platform) -> None:
    _champion(p)
    out = stage.handle_dataset_built(p, _built(p, "cont"))
    (spec,) = _jobs(p).values()
    assert out["mode"] == REUSE_IF_COVERED, out
    assert spec.hyperparameters["mode"] == REUSE_IF_COVERED and spec.hyperparameters["reuse_version"] == CHAMP_TOK
    assert spec.hyperparameters["min_coverage"] == "0.97"
    assert spec.channels["reuse"] == f"s3://{p.settings.artifact_bucket}/tokenizers/{CHAMP_TOK}/"


def _complete(p: Platform, decision: CoverageDecision) -> None:
    """Finish the recorded coverage job with ``decision`` as its result.json, as the job state event would."""
    (spec,) = _jobs(p).values()
    record = JobRecord.model_validate(p.state.get(JOBS_PK, spec.name))
    bucket, key = record.output_uri.removeprefix("s3://").split("/", 1)
    p.objects.put(bucket, key + "result.json", decision.model_dump_json().encode())
    event = {
        "version": "0",
        "id": "1",
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": "000000000000",
        "time": "2025-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"TrainingJobName": spec.name, "TrainingJobStatus": "Completed"},
    }
    from docllm.service_layer.jobs import handle_job_state

    assert handle_job_state(p, event)["outcome"] == "completed"


def _coverage(value: float) -> Coverage:
    return Coverage(coverage=value, tokens=5000, unknown=0, byte_fallback=int(5000 * (1 - value)), records=6,
                    sampled_bytes=9000, total_bytes=9000)  # fmt: skip


def test_a_covering_champion_tokenizer_is_announced_and_the_choice_recorded(p: Platform) -> None:
    _champion(p)
    built = _built(p, "cont")
    stage.handle_dataset_built(p, built)
    kept, why = decide(CHAMP_TOK, _coverage(0.995), 0.97)
    _complete(p, CoverageDecision(reused=kept, candidate_version=CHAMP_TOK, min_coverage=0.97,
                                  coverage=_coverage(0.995), reason=why))  # fmt: skip
    (announced,) = _events(p, "Tokenizer Trained")
    assert announced["tokenizer_version"] == CHAMP_TOK and announced["reused"] and announced["train_after"]
    dataset = built["detail"]["dataset_version"]
    choice = stage.find_choice(p, "cont", dataset)
    assert choice is not None and choice.reused and choice.coverage == 0.995 and choice.source_model == CHAMPION
    # The same dataset built again: the recorded choice is announced again, no second job.
    stage.handle_dataset_built(p, built)
    assert len(_jobs(p)) == 1 and len(_events(p, "Tokenizer Trained")) == 2


def test_a_champion_tokenizer_that_falls_short_leaves_the_new_one_and_the_reason(p: Platform) -> None:
    _champion(p)
    built = _built(p, "cont")
    stage.handle_dataset_built(p, built)
    (spec,) = _jobs(p).values()
    new_version = spec.hyperparameters["tokenizer_version"]
    trained = TokenizerResult(version=new_version, dataset_version=built["detail"]["dataset_version"], vocab_size=384,
                              model_type="bpe", model_sha256="1" * 64, eos_id=2, bos_id=1, pad_id=3, unk_id=0,
                              training_seconds=1.0, files=["tokenizer.model", "result.json"])  # fmt: skip
    kept, why = decide(CHAMP_TOK, _coverage(0.9), 0.97)
    _complete(p, CoverageDecision(reused=kept, candidate_version=CHAMP_TOK, min_coverage=0.97,
                                  coverage=_coverage(0.9), reason=why, trained=trained))  # fmt: skip
    (announced,) = _events(p, "Tokenizer Trained")
    assert announced["tokenizer_version"] == new_version and not announced["reused"]
    assert find_tokenizer(p.state, new_version) is not None  # later builds of the same data reuse it
    choice = stage.find_choice(p, "cont", built["detail"]["dataset_version"])
    assert choice is not None and not choice.reused and "covers only 0.9000" in choice.reason


@pytest.mark.parametrize("family", ["sharing", "student"])
def test_a_shared_or_distilled_family_uses_the_champion_s_tokenizer_without_a_job(p: Platform, family: str) -> None:
    _champion(p)
    out = stage.handle_dataset_built(p, _built(p, family))
    assert out["outcome"] == "shared" and not _jobs(p)
    (announced,) = _events(p, "Tokenizer Trained")
    assert announced["tokenizer_version"] == CHAMP_TOK and announced["family"] == family and announced["reused"]
    assert announced["artifacts_uri"].endswith(f"/tokenizers/{CHAMP_TOK}/")
    choice = stage.find_choice(p, family, announced["dataset_version"])
    assert choice is not None and choice.policy == "shared" and choice.source_model == CHAMPION


def test_sharing_the_tokenizer_of_a_family_without_a_champion_fails_the_stage(p: Platform) -> None:
    out = stage.handle_dataset_built(p, _built(p, "sharing"))
    assert out["outcome"] == "failed" and not _jobs(p)
    (failed,) = _events(p, "Stage Failed")
    assert failed["stage"] == "tokenizer" and failed["request_id"] == "req-t"
    assert failed["reason"] == "family sharing uses family cont's tokenizer, and cont has no champion yet"
    assert not _events(p, "Tokenizer Trained")


def test_a_lora_family_trains_no_tokenizer(p: Platform) -> None:
    out = stage.handle_dataset_built(p, _built(p, "adapter"))
    assert out["outcome"] == "skipped: the family needs no tokenizer" and not _jobs(p)
