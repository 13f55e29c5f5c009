from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from docllm.ports.metrics import MetricsSink
from docllm.training.checkpoint import CHECKPOINT_FILE, META_FILE
from docllm.training.config import TrainConfig
from docllm.training.exceptions import CheckpointError
from docllm.training.loop import LogRecord, StopFlag, learning_rate, train

from .helpers import VOCAB, streams, tiny_model, tiny_train


def train_losses(history: list[LogRecord]) -> list[float]:
    return [r.loss for r in history if r.kind == "train"]


class StopAtStep:
    """Sets the stop flag at a step, as SIGTERM would between two steps."""

    def __init__(self, step: int, flag: StopFlag) -> None:
        self.step, self.flag = step, flag

    def __call__(self, record: LogRecord) -> None:
        if record.kind == "train" and record.step == self.step:
            self.flag.set()


def test_loss_falls_well_below_uniform_on_learnable_data(tmp_path: Path) -> None:
    tr, va = streams()
    out = train(tiny_model(), tiny_train(max_steps=40, eval_interval=40), tr, va, checkpoint_dir=tmp_path)
    assert out.result.val_loss is not None
    assert out.result.val_loss < 0.6 * math.log(VOCAB)
    assert out.result.steps == 40
    assert out.result.tokens_seen == 40 * 4 * 2 * 16


@pytest.mark.parametrize("variant", ["gelu-learned", "llama"])
def test_interrupted_and_resumed_run_has_the_same_loss_curve(variant: str, tmp_path: Path) -> None:
    mcfg = tiny_model(variant, dropout=0.1)  # type: ignore[arg-type]  # dropout: RNG state must resume too
    cfg = tiny_train()
    tr, va = streams()
    whole = train(mcfg, cfg, tr, va, checkpoint_dir=tmp_path / "a")

    flag = StopFlag()
    tr, va = streams()
    first = train(mcfg, cfg, tr, va, checkpoint_dir=tmp_path / "b", stop=flag, callbacks=[StopAtStep(5, flag)])
    assert first.result.interrupted and first.result.steps == 5
    tr, va = streams()  # a fresh process: new streams, new model
    second = train(mcfg, cfg, tr, va, checkpoint_dir=tmp_path / "b")
    assert second.result.resumed_from_step == 5

    assert train_losses(first.history) + train_losses(second.history) == train_losses(whole.history)
    assert second.result.val_loss == whole.result.val_loss


def test_checkpoints_are_written_without_leftover_temporary_files(tmp_path: Path) -> None:
    tr, va = streams()
    train(tiny_model(), tiny_train(max_steps=4, checkpoint_interval=2), tr, va, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT_FILE, META_FILE])
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["step"] == 4


def test_resuming_with_another_model_shape_is_refused(tmp_path: Path) -> None:
    tr, va = streams()
    train(tiny_model(), tiny_train(max_steps=2), tr, va, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError):
        train(tiny_model("gelu-rotary"), tiny_train(max_steps=4), *streams(), checkpoint_dir=tmp_path)


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        train(tiny_model(), tiny_train(max_steps=2), *streams(), checkpoint_dir=tmp_path)


def test_token_budget_sets_the_number_of_steps() -> None:
    tr, _ = streams()
    out = train(tiny_model(), tiny_train(max_steps=None, max_tokens=4 * 2 * 16 * 3 + 1), tr)
    assert out.result.steps == 4  # ceil: the budget is reached, never cut short


def test_epoch_budget_counts_the_stream_length() -> None:
    tr, _ = streams()
    out = train(tiny_model(), tiny_train(max_steps=None, max_epochs=1.0), tr)
    assert out.result.steps == len(tr) // 8


class RecordingSink(MetricsSink):
    def __init__(self) -> None:
        self.points: list[tuple[str, float, dict[str, str] | None]] = []

    def put(self, name: str, value: float, *, unit: str = "Count", dimensions: dict[str, str] | None = None) -> None:
        self.points.append((name, value, dimensions))

    def flush(self) -> None:
        pass


def test_metrics_reach_the_sink_with_dimensions() -> None:
    sink = RecordingSink()
    tr, va = streams()
    train(
        tiny_model(),
        tiny_train(max_steps=4, log_interval=2),
        tr,
        va,
        metrics=sink,
        metric_dimensions={"family": "t"},
    )
    names = {n for n, _, _ in sink.points}
    assert {"TrainLoss", "LearningRate", "TokensPerSecond", "ValidationLoss"} <= names
    assert all(d == {"family": "t"} for _, _, d in sink.points)


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    cfg = TrainConfig(max_steps=100, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(0.1)
    assert learning_rate(cfg, 9, 0.0) == pytest.approx(1.0)
    assert learning_rate(cfg, 10, 0.0) == pytest.approx(1.0)
    assert learning_rate(cfg, 50, 0.5) == pytest.approx(0.55)
    assert learning_rate(cfg, 100, 1.0) == pytest.approx(0.1)
