"""The shards job with answer tuning: examples from the train split only, whole at window starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docllm.answers.tuning import AnswerTuning, build_examples
from docllm.dataset.shards import PackedSequenceReader, load_index
from docllm.dataset.shards_output import ShardsResult
from docllm.dataset.versions import DatasetManifest, build_dataset, read_split_file
from docllm.jobs import shards_job
from docllm.serving.chat import ANSWER_MARKER, CONTEXT_MARKER
from docllm.tokenizer.encode import SentencePieceTokenizer
from tests.unit.dataset.fakes import DictObjects, DictState, add_document
from tests.unit.tokenizer.corpus import texts

BLOCK = 192


def _page(i: int, filler: str) -> list[str]:
    return [
        f"# Feature {i} settings\n\nFeature {i} keeps copies of your data in one bucket.\n\n"
        f"A widget{i} is a container for settings of feature {i}.\n\n"
        f"To turn on feature {i}, you set the mode value to `Mode{i}On`.\n\n"
        f"You can create up to {i + 10} widgets in each of your accounts.",
        filler,
    ]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetManifest, Path, Path]:
    prefix = tmp_path_factory.mktemp("job")
    state, objects = DictState(), DictObjects()
    filler = texts(60, seed=3)
    for i in range(60):
        add_document(state, objects, f"s3/page{i:02d}.md", _page(i, filler[i]))
    manifest, _ = build_dataset(state, objects, artifact_bucket="art")
    channel = prefix / "input" / "data" / "dataset"
    objects.download_prefix(f"s3://art/datasets/{manifest.version}/", channel)
    (prefix / "input" / "config").mkdir(parents=True)
    (prefix / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"vocab_size": "400"}))
    env = {**os.environ, "DOCLLM_SM_PREFIX": str(prefix), "SM_CHANNELS": '["dataset"]'}
    proc = subprocess.run(
        [sys.executable, "-m", "docllm.jobs.tokenizer_job"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return manifest, channel, prefix / "model"


def test_train_stream_holds_whole_examples_at_window_starts(
    job: tuple[DatasetManifest, Path, Path], tmp_path: Path
) -> None:
    _, channel, tokenizer = job
    settings = AnswerTuning(share=0.3)
    result, _ = shards_job.build_shards(
        channel, tokenizer, tmp_path, answer_tuning=settings, block_size=BLOCK, shard_tokens=4096
    )
    assert result.answer_tuning is not None and result.answer_tuning.examples > 0
    assert result.answer_tuning.tag == settings.tag(BLOCK)
    tok = SentencePieceTokenizer.from_file(tokenizer / "tokenizer.model")
    reader = PackedSequenceReader(tmp_path / "train", block_size=BLOCK, shuffle=False)
    prompts = []
    for i in range(len(reader)):
        text = tok.decode(reader.window(i).tolist())
        if text.startswith(CONTEXT_MARKER):
            prompts.append(text)
    assert len(prompts) == result.answer_tuning.examples
    assert all(ANSWER_MARKER in p for p in prompts)
    share = result.answer_tuning.example_tokens / result.tokens["train"]
    assert 0.2 <= share <= 0.31


def test_examples_come_from_the_train_split_only(job: tuple[DatasetManifest, Path, Path]) -> None:
    manifest, channel, _ = job
    train = {d.doc_key for d in manifest.split_documents("train")}
    held_out = {d.doc_key for d in manifest.documents} - train
    assert held_out, "the corpus should have validation/test documents"
    examples = build_examples(lambda: read_split_file(channel / "train.jsonl"), AnswerTuning(), context_length=BLOCK)
    assert examples and {e.doc_key for e in examples} <= train
    held_out_features = {f"Feature {int(k[len('s3/page') : -len('.md')])} " for k in held_out}
    assert not any(f in e.prompt for e in examples for f in held_out_features)


def test_held_out_splits_are_unchanged_by_answer_tuning(
    job: tuple[DatasetManifest, Path, Path], tmp_path: Path
) -> None:
    _, channel, tokenizer = job
    plain, _ = shards_job.build_shards(channel, tokenizer, tmp_path / "plain")
    tuned, _ = shards_job.build_shards(
        channel, tokenizer, tmp_path / "tuned", answer_tuning=AnswerTuning(), block_size=BLOCK
    )
    for split in ("validation", "test"):
        assert plain.tokens[split] == tuned.tokens[split]
        a = load_index(tmp_path / "plain" / split)
        b = load_index(tmp_path / "tuned" / split)
        assert a.doc_starts == b.doc_starts
    assert tuned.tokens["train"] > plain.tokens["train"]
    assert plain.answer_tuning is None


def test_job_reads_the_setting_from_its_hyperparameters(
    job: tuple[DatasetManifest, Path, Path], tmp_path: Path
) -> None:
    _, channel, tokenizer = job
    prefix = tmp_path / "sh"
    (prefix / "input" / "data").mkdir(parents=True)
    (prefix / "input" / "data" / "dataset").symlink_to(channel)
    (prefix / "input" / "data" / "tokenizer").symlink_to(tokenizer)
    hp = {"answer_tuning": AnswerTuning(share=0.1).model_dump_json(), "block_size": str(BLOCK)}
    (prefix / "input" / "config").mkdir(parents=True)
    (prefix / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    env = {**os.environ, "DOCLLM_SM_PREFIX": str(prefix), "SM_CHANNELS": '["dataset", "tokenizer"]'}
    proc = subprocess.run(
        [sys.executable, "-m", "docllm.jobs.shards_job"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = ShardsResult.model_validate_json((prefix / "model" / "result.json").read_text())
    assert result.answer_tuning is not None and result.answer_tuning.tag == AnswerTuning(share=0.1).tag(BLOCK)
    hp["block_size"] = "0"
    (prefix / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    proc = subprocess.run(
        [sys.executable, "-m", "docllm.jobs.shards_job"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1 and "block_size" in (prefix / "output" / "failure").read_text()
