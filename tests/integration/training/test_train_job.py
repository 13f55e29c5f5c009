"""The training job under the SageMaker contract, on a tiny shard set and tokenizer."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from docllm.jobs.contract import JobEnvironment, JobInputError
from docllm.jobs.train_job import EXIT_INTERRUPTED, main
from docllm.training.result import TrainingJobResult

REPO = Path(__file__).resolve().parents[3]
WORDS = [
    "amazon",
    "s3",
    "stores",
    "objects",
    "in",
    "buckets",
    "a",
    "bucket",
    "is",
    "a",
    "container",
    "for",
    "objects",
]


def _layout(root: Path, hyperparameters: dict[str, str]) -> dict[str, str]:
    import sentencepiece as spm

    from docllm.dataset.shards import write_shards

    tok = root / "input" / "data" / "tokenizer"
    tok.mkdir(parents=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(WORDS)] * 40),
        model_writer=buf,
        vocab_size=40,
        model_type="bpe",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        minloglevel=2,
    )
    (tok / "tokenizer.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(tok / "tokenizer.model"))
    rng = np.random.default_rng(0)
    docs = [sp.encode(" ".join(rng.permutation(WORDS))) for _ in range(120)]
    shards = root / "input" / "data" / "shards"
    write_shards(docs[:100], shards / "train", vocab_size=40, eos_id=3, shard_tokens=1500)
    write_shards(docs[100:], shards / "validation", vocab_size=40, eos_id=3)
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return {
        "DOCLLM_SM_PREFIX": str(root),
        "SM_CHANNELS": '["shards", "tokenizer"]',
        "DOCLLM_CHECKPOINT_DIR": str(root / "checkpoints"),
    }


TINY = json.dumps({"preset": "tiny", "n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 16})


#: A short CPU run that learns more than word frequencies; the distillation tests run it shorter.
TRAIN = {
    "max_steps": 30,
    "micro_batch_size": 4,
    "warmup_steps": 2,
    "learning_rate": 0.005,
    "eval_interval": 10,
    "eval_batches": 2,
    "device": "cpu",
    "precision": "fp32",
    "progress": False,
}


def test_job_trains_exports_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    environ = _layout(
        tmp_path,
        {
            "model_config": TINY,
            "train_config": json.dumps(TRAIN),
            "model_version": "m-1",
            "output_uri": "s3://bucket/models/m-1/",
        },
    )
    published: list[tuple[Path, str]] = []
    monkeypatch.setattr("docllm.jobs.contract.publish_directory", lambda src, uri: published.append((src, uri)))
    env = JobEnvironment.from_env(environ)
    main(env)

    result = TrainingJobResult.model_validate_json((env.model_dir / "result.json").read_text())
    assert result.steps == 30 and result.model_version == "m-1"
    assert result.final_val_loss is not None and result.unigram_val_loss is not None
    assert result.final_val_loss < result.unigram_val_loss  # learnt more than word frequencies
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.model",
        "README.md",
        "generation_config.json",
    ):
        assert (env.model_dir / "hf" / name).exists(), name
    assert (env.checkpoint_dir / "ckpt.pt").exists()
    assert published == [(env.model_dir, "s3://bucket/models/m-1/")]


def test_job_without_a_preset_or_family_is_an_input_error(tmp_path: Path) -> None:
    environ = _layout(tmp_path, {"train_config": json.dumps({"max_steps": 1})})
    with pytest.raises(JobInputError, match="preset"):
        main(JobEnvironment.from_env(environ))


def test_job_with_an_invalid_training_setting_names_it(tmp_path: Path) -> None:
    environ = _layout(tmp_path, {"model_config": TINY, "train_config": json.dumps({"max_steps": 1, "beta1": 2})})
    with pytest.raises(JobInputError, match=r"train_config\.beta1"):
        main(JobEnvironment.from_env(environ))


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_as_interrupted(tmp_path: Path) -> None:
    train_cfg = {
        "max_minutes": 5,
        "micro_batch_size": 4,
        "checkpoint_interval": 1,
        "device": "cpu",
        "precision": "fp32",
        "progress": False,
    }
    environ = _layout(tmp_path, {"model_config": TINY, "train_config": json.dumps(train_cfg)})
    env = {**os.environ, **environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "docllm.jobs.train_job"], env=env, cwd=REPO)
    meta = tmp_path / "checkpoints" / "ckpt.json"
    deadline = time.monotonic() + 60
    while not meta.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert meta.exists(), "training never reached its first checkpoint"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == EXIT_INTERRUPTED
    saved = json.loads(meta.read_text())
    assert saved["step"] >= 1
    assert (tmp_path / "output" / "failure").read_text().startswith("Interrupted")
    assert not (tmp_path / "model" / "result.json").exists()


# --- distillation: the teacher channel -------------------------------------------------------------

TEACHER_URI = "s3://bucket/models/teacher-1/hf/"
DISTILL_TRAIN = {
    **TRAIN,
    "max_steps": 20,
    "distill": {"teacher_uri": TEACHER_URI, "teacher_version": "teacher-1", "teacher_manifest_sha256": "ab" * 32},
}


def _with_teacher(root: Path, *, vocab: int = 40, same_tokenizer: bool = True) -> dict[str, str]:
    """The job's layout plus a ``teacher`` channel holding a (random) teacher's export."""
    import torch

    from docllm.model.config import ModelConfig
    from docllm.model.export import export_hf
    from docllm.model.gpt import GPT

    environ = _layout(
        root, {"model_config": TINY, "train_config": json.dumps(DISTILL_TRAIN), "model_version": "student-1"}
    )
    torch.manual_seed(0)
    teacher = GPT(ModelConfig.preset("tiny", vocab_size=vocab, n_layer=2, n_embd=48, n_head=2, block_size=16))
    tok = root / "input" / "data" / "tokenizer"
    out = export_hf(teacher, root / "input" / "data" / "teacher", tokenizer_dir=tok if same_tokenizer else None)
    if not same_tokenizer:
        (out / "tokenizer.model").write_bytes(b"another tokenizer of the same size")
    return {**environ, "SM_CHANNELS": '["shards", "teacher", "tokenizer"]'}


def test_a_distill_job_trains_from_its_teacher_and_records_it(tmp_path: Path) -> None:
    import hashlib

    env = JobEnvironment.from_env(_with_teacher(tmp_path))
    main(env)
    result = TrainingJobResult.model_validate_json((env.model_dir / "result.json").read_text())
    assert result.steps == 20 and result.train_config["distill"]["teacher_uri"] == TEACHER_URI
    teacher = result.teacher
    assert teacher is not None
    weights = (tmp_path / "input" / "data" / "teacher" / "model.safetensors").read_bytes()
    assert (teacher.model_version, teacher.uri, teacher.manifest_sha256) == ("teacher-1", TEACHER_URI, "ab" * 32)
    assert (teacher.weights_file, teacher.weights_sha256) == ("model.safetensors", hashlib.sha256(weights).hexdigest())
    assert teacher.model_config_["n_layer"] == 2 and teacher.n_params > result.n_params
    assert "distilled from: teacher-1" in (env.model_dir / "hf" / "README.md").read_text()


def test_a_teacher_with_another_tokenizer_is_an_input_error(tmp_path: Path) -> None:
    env = JobEnvironment.from_env(_with_teacher(tmp_path, same_tokenizer=False))
    with pytest.raises(JobInputError, match=r"tokenizer\.model differs"):
        main(env)


def test_a_teacher_with_another_vocabulary_is_an_input_error(tmp_path: Path) -> None:
    env = JobEnvironment.from_env(_with_teacher(tmp_path, vocab=200, same_tokenizer=False))
    with pytest.raises(JobInputError, match="vocabulary has 256 rows and the student's 64"):
        main(env)


def test_a_distill_job_without_its_teacher_channel_is_an_input_error(tmp_path: Path) -> None:
    environ = {**_with_teacher(tmp_path), "SM_CHANNELS": '["shards", "tokenizer"]'}
    with pytest.raises(JobInputError, match="channel 'teacher' is missing"):
        main(JobEnvironment.from_env(environ))
