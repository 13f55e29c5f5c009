"""Continued runs: the loop starts from earlier weights (weights only), refuses weights of another model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from docllm.model.export import export_hf
from docllm.model.gpt import GPT
from docllm.training.checkpoint import (
    check_init_config,
    check_init_tokenizer,
    load_checkpoint,
    load_init_weights,
)
from docllm.training.exceptions import CheckpointError
from docllm.training.loop import LogRecord, train

from .helpers import VOCAB, streams, tiny_model, tiny_train


def _trained(tmp_path: Path) -> tuple[GPT, Path]:
    """A model trained for a while, with its checkpoint directory."""
    out = train(tiny_model(), tiny_train(max_steps=30), *streams(), checkpoint_dir=tmp_path / "v1")
    assert out.model is not None
    return out.model, tmp_path / "v1"


def _first_val(history: list[LogRecord]) -> float:
    return next(r.loss for r in history if r.kind == "val")


def test_a_run_from_an_export_starts_where_the_earlier_model_ended(tmp_path: Path) -> None:
    model, _ = _trained(tmp_path)
    export = export_hf(model, tmp_path / "hf", tokenizer_dir=None)
    init = load_init_weights(export)
    assert init.weights_file == "model.safetensors"
    assert init.weights_sha256 == hashlib.sha256((export / "model.safetensors").read_bytes()).hexdigest()

    # Zero steps: the model returned is exactly the initial one, whatever the seed.
    same = train(tiny_model(), tiny_train(max_steps=1, learning_rate=1e-12, warmup_steps=0, seed=5),
                 *streams(), init=init)  # fmt: skip
    assert same.model is not None
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(same.model.state_dict()[name], tensor, rtol=0, atol=1e-6)

    # A short continued run begins at the earlier model's loss, far below a fresh run's start.
    short = tiny_train(max_steps=4, eval_interval=1, warmup_steps=0)
    cont = train(tiny_model(), short, *streams(), init=init)
    fresh = train(tiny_model(), short, *streams())
    assert _first_val(cont.history) < _first_val(fresh.history) - 1.0  # nats
    assert cont.result.steps == 4 and cont.result.resumed_from_step is None  # its own step counter


def test_a_run_from_a_checkpoint_takes_the_weights_and_nothing_else(tmp_path: Path) -> None:
    _, ckpt_dir = _trained(tmp_path)
    init = load_init_weights(ckpt_dir)
    assert init.weights_file == "ckpt.pt"
    saved = load_checkpoint(ckpt_dir / "ckpt.pt")
    assert saved["counters"]["step"] == 30
    out = train(tiny_model(), tiny_train(max_steps=3, warmup_steps=0), *streams(), init=init,
                checkpoint_dir=tmp_path / "v2")  # fmt: skip
    # Step, tokens and optimizer restart: the continued run counts its own 3 steps, not 33.
    assert out.result.steps == 3 and out.result.tokens_seen == 3 * 4 * 2 * 16
    mine = load_checkpoint(tmp_path / "v2" / "ckpt.pt")
    assert mine["counters"]["step"] == 3
    assert mine["optimizer"]["state"][0]["step"].item() == 3  # a fresh AdamW, not the old moments


def test_a_restarted_continued_run_resumes_from_its_own_checkpoint(tmp_path: Path) -> None:
    model, _ = _trained(tmp_path)
    init = load_init_weights(export_hf(model, tmp_path / "hf", tokenizer_dir=None))
    train(tiny_model(), tiny_train(max_steps=4, warmup_steps=0), *streams(), init=init, checkpoint_dir=tmp_path / "c")
    again = train(tiny_model(), tiny_train(max_steps=6, warmup_steps=0), *streams(), init=init,
                  checkpoint_dir=tmp_path / "c")  # fmt: skip
    assert again.result.resumed_from_step == 4 and again.result.steps == 6


def test_weights_of_another_shape_or_tokenizer_are_refused(tmp_path: Path) -> None:
    model, _ = _trained(tmp_path)
    init = load_init_weights(export_hf(model, tmp_path / "hf", tokenizer_dir=None))
    wider = tiny_model().model_copy(update={"n_embd": 48})
    with pytest.raises(CheckpointError, match=r"n_embd: 32 \(init\) vs 48 \(run\)"):
        train(wider, tiny_train(max_steps=1), *streams(), init=init)
    with pytest.raises(CheckpointError, match=r"vocab_size.*the tokenizer differs"):
        check_init_config(init.model_config, tiny_model().model_copy(update={"vocab_size": VOCAB * 2}).model_dump())
    # Dropout is a training setting, not the model's shape: a run may change it.
    check_init_config(init.model_config, tiny_model(dropout=0.1).model_dump())


def test_an_export_with_other_tokenizer_files_is_refused(tmp_path: Path) -> None:
    tok, other = tmp_path / "tok", tmp_path / "other"
    tok.mkdir()
    other.mkdir()
    (tok / "tokenizer.model").write_bytes(b"the run's tokenizer")
    (other / "tokenizer.model").write_bytes(b"a retrained tokenizer of the same size")
    check_init_tokenizer(tok, tok)
    check_init_tokenizer(tmp_path / "ckpt-without-tokenizer-files", tok)  # a checkpoint: size checked only
    with pytest.raises(CheckpointError, match=r"tokenizer\.model differs"):
        check_init_tokenizer(other, tok)


def test_a_directory_without_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no weights here")
    with pytest.raises(CheckpointError, match=r"neither a docllm export .* found \['notes.txt'\]"):
        load_init_weights(tmp_path)
