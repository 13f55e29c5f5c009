"""The distill method in the training loop: a tiny student learns from a tiny teacher; the plain path is untouched."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from docllm.model import loss as loss_module
from docllm.model.config import ModelConfig
from docllm.model.export import export_hf
from docllm.model.gpt import GPT
from docllm.training.config import DistillConfig, TrainConfig, parse_train_config
from docllm.training.distill import check_same_tokenizer, check_teacher, load_teacher, teacher_dtype
from docllm.training.exceptions import TrainingConfigError
from docllm.training.families import load_families
from docllm.training.launch import train_job_spec
from docllm.training.loop import LogRecord, train
from docllm.training.streams import ArrayTokenStream

from .helpers import BLOCK, VOCAB, streams, tiny_model, tiny_train

TEACHER_URI = "s3://art/models/smoke/teacher-1/hf/"


def distill(**kw: object) -> DistillConfig:
    return DistillConfig.model_validate({"teacher_uri": TEACHER_URI, **kw})


def random_teacher(**shape: object) -> GPT:
    """An untrained teacher with arbitrary, far from uniform next-token distributions (a wider init
    than training's), so there is something definite for the student to learn from it."""
    torch.manual_seed(7)
    fields: dict[str, object] = {"n_layer": 1, "n_head": 2, "n_embd": 48, "block_size": BLOCK, "init_std": 0.1}
    return GPT(tiny_model().model_copy(update={**fields, **shape}))


def losses(history: list[LogRecord]) -> list[float]:
    return [r.loss for r in history if r.kind == "train"]


def few_hundred_tokens() -> tuple[ArrayTokenStream, ArrayTokenStream]:
    tokens = np.random.default_rng(3).integers(0, VOCAB, size=400)
    return (
        ArrayTokenStream(tokens[:320], block_size=BLOCK, seed=0),
        ArrayTokenStream(tokens[320:], block_size=BLOCK, shuffle=False),
    )


def test_a_tiny_student_learns_from_a_tiny_random_teacher() -> None:
    tr, va = few_hundred_tokens()  # 400 tokens of noise: only the teacher has anything to teach
    cfg = tiny_train(max_steps=20, eval_interval=20, learning_rate=1e-2, distill=distill(alpha=1.0))
    out = train(tiny_model(), cfg, tr, va, teacher=random_teacher())
    curve = losses(out.history)
    assert len(curve) == 20 and all(math.isfinite(x) for x in curve)
    assert curve[-1] < 0.6 * curve[0], curve  # the KL to the teacher falls by far more than noise


def test_the_mixed_loss_decreases_and_validation_stays_plain_cross_entropy() -> None:
    tr, va = streams()
    out = train(tiny_model(), tiny_train(max_steps=20, eval_interval=20, distill=distill()), tr, va,
                teacher=random_teacher())  # fmt: skip
    curve = losses(out.history)
    assert curve[-1] < curve[0]
    val = [r.loss for r in out.history if r.kind == "val"]
    assert out.result.val_loss == val[-1] and val[-1] < math.log(VOCAB) + 0.5  # a CE, on the CE scale


def test_with_alpha_zero_the_run_is_the_plain_run() -> None:
    plain = train(tiny_model(), tiny_train(), *streams())
    mixed = train(tiny_model(), tiny_train(distill=distill(alpha=0.0)), *streams(), teacher=random_teacher())
    np.testing.assert_allclose(losses(mixed.history), losses(plain.history), rtol=1e-4)
    assert mixed.result.val_loss == pytest.approx(plain.result.val_loss, rel=1e-4)


def test_the_plain_path_never_runs_the_distillation_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("plain training must not compute the distillation loss")

    monkeypatch.setattr(loss_module, "linear_distillation_loss", refuse)
    out = train(tiny_model(), tiny_train(max_steps=2), *streams())
    assert out.result.steps == 2


def test_a_bf16_teacher_trains_a_fp32_student() -> None:
    cfg = tiny_train(max_steps=3, distill=distill(teacher_dtype="bf16"))
    teacher = random_teacher()
    out = train(tiny_model(), cfg, *streams(), teacher=teacher)
    assert all(math.isfinite(x) for x in losses(out.history))
    assert teacher_dtype("auto", None) == torch.float32 and teacher_dtype("auto", torch.bfloat16) == torch.bfloat16


def test_a_teacher_needs_the_distill_setting_and_the_setting_a_teacher() -> None:
    with pytest.raises(TrainingConfigError, match="distill"):
        train(tiny_model(), tiny_train(max_steps=1), *streams(), teacher=random_teacher())
    with pytest.raises(TrainingConfigError, match="distill"):
        train(tiny_model(), tiny_train(max_steps=1, distill=distill()), *streams())


def test_a_teacher_with_another_vocabulary_is_refused_by_name() -> None:
    with pytest.raises(TrainingConfigError) as err:
        check_teacher(tiny_model().model_copy(update={"vocab_size": 128}), tiny_model())
    assert err.value.field == "distill.teacher_uri" and "tokenizer" in str(err.value)


def test_a_teacher_with_a_shorter_context_is_refused() -> None:
    with pytest.raises(TrainingConfigError, match="context"):
        check_teacher(tiny_model().model_copy(update={"block_size": BLOCK // 2}), tiny_model())


def test_a_teacher_loads_from_an_export_or_a_checkpoint(tmp_path: Path) -> None:
    out = train(tiny_model(), tiny_train(max_steps=2), *streams(), checkpoint_dir=tmp_path / "ckpt")
    assert out.model is not None
    export_hf(out.model, tmp_path / "hf", tokenizer_dir=None)
    x = torch.randint(0, VOCAB, (1, BLOCK))
    for directory, weights in ((tmp_path / "hf", "model.safetensors"), (tmp_path / "ckpt", "ckpt.pt")):
        teacher = load_teacher(directory)
        assert teacher.weights_file == weights and len(teacher.weights_sha256) == 64
        assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
        torch.testing.assert_close(teacher.model(x)[0], out.model.eval()(x)[0])
    with pytest.raises(TrainingConfigError, match="neither"):
        load_teacher(tmp_path)


def test_a_teacher_with_another_tokenizer_file_is_refused(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "tok", tmp_path / "teacher"
    ours.mkdir()
    theirs.mkdir()
    (ours / "tokenizer.model").write_bytes(b"same size, other pieces")
    (theirs / "tokenizer.model").write_bytes(b"same size, these pieces")
    with pytest.raises(TrainingConfigError, match=r"tokenizer\.model differs"):
        check_same_tokenizer(theirs, ours)
    (theirs / "tokenizer.model").write_bytes((ours / "tokenizer.model").read_bytes())
    check_same_tokenizer(theirs, ours)


def test_distill_settings_validate_and_name_the_field() -> None:
    cfg = parse_train_config({"max_steps": 1, "distill": {"teacher_uri": TEACHER_URI, "temperature": 3}})
    assert cfg.distill is not None and (cfg.distill.temperature, cfg.distill.alpha) == (3.0, 0.5)
    assert TrainConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(TrainingConfigError) as err:
        parse_train_config({"max_steps": 1, "distill": {"teacher_uri": TEACHER_URI, "alpha": 1.5}})
    assert err.value.field == "distill.alpha"
    with pytest.raises(TrainingConfigError) as err:
        parse_train_config({"max_steps": 1, "distill": {"teacher_uri": TEACHER_URI, "teacher_manifest_sha256": "x"}})
    assert err.value.field == "distill.teacher_manifest_sha256"
    for name, field in DistillConfig.model_fields.items():
        assert field.description, name


def test_the_job_spec_gets_a_teacher_channel_only_when_distilling() -> None:
    smoke = load_families()["smoke"]
    common = {
        "family": smoke,
        "dataset_version": "ds-1",
        "tokenizer_version": "tok-1",
        "shards_uri": "s3://art/shards/ds-1/",
        "tokenizer_uri": "s3://art/tokenizers/tok-1/",
        "artifact_bucket": "art",
        "job_name": "smoke-student-ds-1",
    }
    assert set(train_job_spec(**common).channels) == {"shards", "tokenizer"}  # type: ignore[arg-type]
    spec = train_job_spec(**common, train_overrides={"distill": {"teacher_uri": TEACHER_URI}})  # type: ignore[arg-type]
    assert spec.channels["teacher"] == TEACHER_URI
    assert TrainConfig.model_validate_json(spec.hyperparameters["train_config"]).distill == distill()
    with pytest.raises(TrainingConfigError, match="s3://"):
        train_job_spec(**common, train_overrides={"distill": {"teacher_uri": "/tmp/teacher"}})  # type: ignore[arg-type]


def test_shapes_of_the_teacher_may_differ_from_the_students() -> None:
    student = ModelConfig.preset("tiny", vocab_size=VOCAB, n_layer=1, n_embd=32, n_head=2, block_size=BLOCK)
    teacher = student.model_copy(update={"n_layer": 3, "n_embd": 64, "block_size": 2 * BLOCK})
    check_teacher(teacher, student)  # another depth, width and a longer context are fine
