"""The training job's ``init`` channel: a continued run starts from an earlier job's export."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from docllm.jobs.contract import JobEnvironment, JobInputError
from docllm.jobs.train_job import main
from docllm.training.result import TrainingJobResult
from tests.integration.training.test_train_job import TINY, TRAIN, _layout


def _first_job(root: Path) -> tuple[Path, TrainingJobResult]:
    env = JobEnvironment.from_env(_layout(root, {"model_config": TINY, "train_config": json.dumps(TRAIN)}))
    main(env)
    return env.model_dir / "hf", TrainingJobResult.model_validate_json((env.model_dir / "result.json").read_text())


def _continued(root: Path, export: Path, **train: object) -> JobEnvironment:
    cfg = {**TRAIN, "max_steps": 5, "warmup_steps": 0, "eval_interval": 1, **train}
    environ = _layout(root, {"model_config": TINY, "train_config": json.dumps(cfg), "model_version": "m-2"})
    shutil.copytree(export, root / "input" / "data" / "init")
    return JobEnvironment.from_env({**environ, "SM_CHANNELS": '["init", "shards", "tokenizer"]'})


def test_a_continued_job_starts_from_the_export_and_records_it(tmp_path: Path) -> None:
    export, first = _first_job(tmp_path / "v1")
    env = _continued(tmp_path / "v2", export)
    main(env)
    result = TrainingJobResult.model_validate_json((env.model_dir / "result.json").read_text())
    assert result.init is not None and result.init.weights_file == "model.safetensors"
    sha = hashlib.sha256((export / "model.safetensors").read_bytes()).hexdigest()
    assert result.init.weights_sha256 == sha
    assert result.steps == 5
    history = [json.loads(line) for line in (env.model_dir / "history.jsonl").read_text().splitlines()]
    first_val = next(h["loss"] for h in history if h["kind"] == "val")
    assert first.unigram_val_loss is not None
    assert first_val < first.unigram_val_loss  # trained weights, not a random init
    assert f"continued from: model.safetensors sha256 {sha[:12]}" in (env.model_dir / "hf" / "README.md").read_text()


def test_an_export_with_another_tokenizer_is_an_input_error(tmp_path: Path) -> None:
    export, _ = _first_job(tmp_path / "v1")
    (export / "tokenizer.model").write_bytes(b"a retrained tokenizer")
    with pytest.raises(JobInputError, match=r"channel 'init': .*tokenizer\.model differs"):
        main(_continued(tmp_path / "v2", export))


def test_an_export_of_another_shape_is_an_input_error(tmp_path: Path) -> None:
    export, _ = _first_job(tmp_path / "v1")
    env = _continued(tmp_path / "v2", export)
    hp = env.hyperparameters
    wider = json.loads(TINY) | {"n_embd": 48}
    (tmp_path / "v2" / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({**hp, "model_config": json.dumps(wider)})
    )
    env = JobEnvironment.from_env(
        {
            "DOCLLM_SM_PREFIX": str(tmp_path / "v2"),
            "SM_CHANNELS": '["init", "shards", "tokenizer"]',
            "DOCLLM_CHECKPOINT_DIR": str(tmp_path / "v2" / "checkpoints"),
        }
    )
    with pytest.raises(JobInputError, match=r"channel 'init': .*n_embd: 32 \(init\) vs 48 \(run\)"):
        main(env)
