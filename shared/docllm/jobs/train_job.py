"""Training job: shards + tokenizer in, checkpoints, a Hugging Face export and ``result.json`` out.

Runs under the SageMaker container contract (:mod:`docllm.jobs.contract`), alone
or under ``torchrun`` (DDP/FSDP; only rank 0 exports and publishes).

Hyperparameters (all strings):
    ``family``          a name from ``families.yaml`` (preset, variant, budget, training overrides)
    ``model_config``    JSON: ModelConfig overrides, or ``{"preset": "tiny", ...}`` without a family
    ``train_config``    JSON: TrainConfig overrides (on top of the family's)
    ``model_version``   id of this model (default: the job's host name and time)
    ``output_uri``      s3:// prefix to publish ``hf/`` and ``result.json`` to (empty: keep local)
    ``dataset_version``, ``tokenizer_version``  recorded in the result and the model card
Channels: ``shards`` (``train/``, ``validation/`` each with ``index.json`` + ``shard-*.bin``),
``tokenizer`` (``tokenizer.model``/``tokenizer.json``/...) and, when ``train_config`` has ``distill``,
``teacher`` (the teacher's export or checkpoint directory, ``distill.teacher_uri``).

Smoke run on a laptop (after laying out /tmp/sm as SageMaker would)::

    DOCLLM_SM_PREFIX=/tmp/sm SM_CHANNELS='["shards","tokenizer"]' python -m docllm.jobs.train_job
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from docllm.jobs import contract
from docllm.jobs.contract import JobEnvironment, JobInputError, run_job, write_failure
from docllm.model.config import ModelConfig
from docllm.training.config import TrainConfig
from docllm.training.exceptions import TrainingConfigError
from docllm.training.families import ModelFamily, load_families
from docllm.training.result import InitRecord, TeacherRecord, TrainingJobResult

if TYPE_CHECKING:
    from docllm.training.checkpoint import InitWeights
    from docllm.training.distill import Teacher
    from docllm.training.loop import TokenStream

# Exit status of a process stopped by SIGTERM (128 + 15): the checkpoint is saved, a restart resumes.
EXIT_INTERRUPTED = 143


def _json_hp(env: JobEnvironment, name: str) -> dict[str, Any]:
    raw = env.hp(name, "{}")
    try:
        value = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as e:
        raise JobInputError(f"hyperparameter {name!r} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise JobInputError(f"hyperparameter {name!r} must be a JSON object")
    return value


def resolve_configs(
    env: JobEnvironment, vocab_size: int, families: dict[str, ModelFamily] | None = None
) -> tuple[ModelFamily | None, ModelConfig, TrainConfig]:
    """Family defaults, then the JSON overrides; every error names the hyperparameter and field."""
    family: ModelFamily | None = None
    name = env.hp("family", "")
    if name:
        known = families if families is not None else load_families()
        if name not in known:
            raise JobInputError(f"unknown family {name!r}; known: {sorted(known)}")
        family = known[name]
    model_over = _json_hp(env, "model_config")
    train_over = _json_hp(env, "train_config")
    preset = model_over.pop("preset", family.preset if family else None)
    if preset is None:
        raise JobInputError("set hyperparameter 'family' or 'model_config' with a 'preset'")
    if family is not None:
        model_over.setdefault("variant", family.variant)
        if family.block_size is not None:
            model_over.setdefault("block_size", family.block_size)
    try:
        model_cfg = ModelConfig.preset(preset, vocab_size=vocab_size, **model_over)
    except (ValidationError, ValueError) as e:
        raise JobInputError(f"model_config: {e}") from e
    try:
        train_cfg = family.train_config(**train_over) if family else TrainConfig.model_validate(train_over)
    except TrainingConfigError as e:
        raise JobInputError(f"train_config.{e.field}: {e}") from e
    except ValidationError as e:
        err = e.errors()[0]
        raise JobInputError(f"train_config.{'.'.join(map(str, err['loc']))}: {err['msg']}") from e
    return family, model_cfg, train_cfg


def open_stream(split_dir: Path, *, block_size: int, seed: int, rank: int, world: int, shuffle: bool) -> TokenStream:
    """The shard reader for one split (imported here: the dataset package is another stage's)."""
    from docllm.dataset.shards import PackedSequenceReader

    return PackedSequenceReader(
        split_dir, block_size=block_size, seed=seed, rank=rank, world_size=world, shuffle=shuffle
    )


def write_history(path: Path, history: list[Any]) -> None:
    """One JSON object per logged point (training loss every log_interval steps, validation loss)."""
    from dataclasses import asdict

    with path.open("w", encoding="utf-8") as f:
        for record in history:
            f.write(json.dumps(asdict(record)) + "\n")


def job_provenance() -> dict[str, Any]:
    """The code and environment that ran this job, for the compliance manifest."""
    from docllm.provenance import code_identity, environment_identity

    return {"code": code_identity(), "environment": environment_identity()}


def _channel(env: JobEnvironment, name: str) -> Path:
    path = env.channels.get(name)
    if path is None or not path.is_dir():
        raise JobInputError(f"channel {name!r} is missing (got channels {sorted(env.channels)})")
    return path


def load_checked_teacher(env: JobEnvironment, tokenizer_dir: Path, student: ModelConfig) -> Teacher:
    """The ``teacher`` channel's model, refused (an input error) unless it shares the student's tokenizer."""
    from docllm.model.exceptions import ModelError
    from docllm.training.distill import check_same_tokenizer, check_teacher, load_teacher
    from docllm.training.exceptions import CheckpointError

    teacher_dir = _channel(env, "teacher")
    try:
        teacher = load_teacher(teacher_dir)
        check_teacher(teacher.model.config, student)
        check_same_tokenizer(teacher_dir, tokenizer_dir)
    except TrainingConfigError as e:
        raise JobInputError(f"train_config.{e}") from e
    except (ModelError, CheckpointError) as e:
        raise JobInputError(f"train_config.distill.teacher_uri: cannot load the teacher: {e}") from e
    return teacher


def load_checked_init(env: JobEnvironment, tokenizer_dir: Path, model: ModelConfig) -> InitWeights:
    """The ``init`` channel's weights, refused (an input error, so the job fails at once and says
    why) unless they were made for this model configuration and this tokenizer."""
    from docllm.training.checkpoint import check_init_config, check_init_tokenizer, load_init_weights
    from docllm.training.exceptions import CheckpointError

    init_dir = _channel(env, "init")
    try:
        init = load_init_weights(init_dir)
        check_init_config(init.model_config, model.model_dump())
        check_init_tokenizer(init_dir, tokenizer_dir)
    except CheckpointError as e:
        raise JobInputError(f"channel 'init': {e}") from e
    return init


def teacher_record(train_cfg: TrainConfig, teacher: Teacher | None) -> TeacherRecord | None:
    """What the result (and from it the manifest) says about the teacher."""
    if teacher is None or train_cfg.distill is None:
        return None
    d = train_cfg.distill
    return TeacherRecord(
        model_version=d.teacher_version,
        uri=d.teacher_uri,
        manifest_sha256=d.teacher_manifest_sha256,
        weights_file=teacher.weights_file,
        weights_sha256=teacher.weights_sha256,
        n_params=teacher.model.num_params(),
        model_config_=teacher.model.config.model_dump(),
    )


def main(env: JobEnvironment) -> None:
    import torch  # heavy: only the job pays for it

    from docllm.model.export import export_hf, read_tokenizer_info
    from docllm.training.baselines import unigram_cross_entropy
    from docllm.training.distributed import init_distributed
    from docllm.training.loop import StopFlag, train

    shards, tok_dir = _channel(env, "shards"), _channel(env, "tokenizer")
    if not (shards / "train").is_dir():
        raise JobInputError(f"shards channel has no train/ split: {sorted(p.name for p in shards.iterdir())}")
    tok = read_tokenizer_info(tok_dir)
    family, model_cfg, train_cfg = resolve_configs(env, tok.vocab_size)
    teacher = load_checked_teacher(env, tok_dir, model_cfg) if train_cfg.distill is not None else None
    init = load_checked_init(env, tok_dir, model_cfg) if "init" in env.channels else None
    info = init_distributed(train_cfg.device)
    stop = StopFlag()
    if threading.current_thread() is threading.main_thread():
        stop.install((signal.SIGTERM,))

    def stream(split: str, shuffle: bool, world: int = info.world_size, rank: int = info.rank) -> TokenStream:
        return open_stream(
            shards / split,
            block_size=model_cfg.block_size,
            seed=train_cfg.seed,
            rank=rank,
            world=world,
            shuffle=shuffle,
        )

    train_stream = stream("train", True)
    val_stream = stream("validation", False) if (shards / "validation").is_dir() else None
    model_version = env.hp("model_version", f"{env.current_host}-{time.strftime('%Y%m%d%H%M%S')}")
    dims = {"family": family.name if family else "custom", "job": os.environ.get("TRAINING_JOB_NAME", "local")}
    from docllm.bootstrap import build_platform

    # Loss, learning rate and tokens/s go where every other metric goes (EMF on AWS, the
    # data directory locally), which is how `docllm status` shows a running job's progress.
    metrics = build_platform().metrics if info.is_main else None
    outcome = train(
        model_cfg,
        train_cfg,
        train_stream,
        val_stream,
        checkpoint_dir=env.checkpoint_dir,
        stop=stop,
        metrics=metrics,
        metric_dimensions=dims,
        dist_info=info,
        teacher=teacher.model if teacher is not None else None,
        init=init,
    )
    res = outcome.result
    if res.interrupted:
        write_failure(env, f"Interrupted: checkpoint saved at step {res.steps}; a restart resumes from it")
        raise SystemExit(EXIT_INTERRUPTED)
    if not info.is_main:
        return
    assert outcome.model is not None
    unigram = None
    if (shards / "validation").is_dir():
        unigram = unigram_cross_entropy(
            iter(stream("train", False, 1, 0)), iter(stream("validation", False, 1, 0)), model_cfg.vocab_size
        )
    card = {
        "family": family.name if family else "custom",
        "model_version": model_version,
        "dataset_version": env.hp("dataset_version", "unknown"),
        "tokenizer_version": env.hp("tokenizer_version", "unknown"),
        "validation loss": f"{res.val_loss:.4f}" if res.val_loss is not None else "n/a",
        "unigram baseline": f"{unigram:.4f}" if unigram is not None else "n/a",
        "training tokens": f"{res.tokens_seen:,}",
    }
    taught = teacher_record(train_cfg, teacher)
    if taught is not None:
        card["distilled from"] = taught.model_version or taught.uri
    if init is not None:
        card["continued from"] = f"{init.weights_file} sha256 {init.weights_sha256[:12]}"
    export_hf(outcome.model.to(torch.float32).cpu(), env.model_dir / "hf", tokenizer_dir=tok_dir, card=card)
    # The loss curves of the evaluation report (and the record of how training went), beside the export.
    write_history(env.model_dir / "history.jsonl", outcome.history)
    result = TrainingJobResult(
        model_version=model_version,
        family=family.name if family else None,
        dataset_version=env.hp("dataset_version", "") or None,
        tokenizer_version=env.hp("tokenizer_version", "") or None,
        variant=model_cfg.variant,
        hf_architecture=model_cfg.hf_architecture,
        n_params=res.n_params,
        final_train_loss=res.train_loss,
        final_val_loss=res.val_loss,
        best_val_loss=res.best_val_loss,
        unigram_val_loss=unigram,
        tokens_seen=res.tokens_seen,
        steps=res.steps,
        elapsed_s=res.elapsed_s,
        tokens_per_s=res.tokens_per_s,
        world_size=res.world_size,
        device=res.device,
        resumed_from_step=res.resumed_from_step,
        model_config_=model_cfg.model_dump(),
        train_config=train_cfg.model_dump(),
        provenance=job_provenance(),
        teacher=taught,
        init=InitRecord(weights_file=init.weights_file, weights_sha256=init.weights_sha256) if init else None,
    )
    (env.model_dir / "result.json").write_text(result.model_dump_json(indent=2, by_alias=True), encoding="utf-8")
    output_uri = env.hp("output_uri", "")
    if output_uri:
        contract.publish_directory(env.model_dir, output_uri)  # result.json goes last
    print(
        json.dumps({"model_version": model_version, "val_loss": res.val_loss, "unigram": unigram}),
        file=sys.stderr,
    )


if __name__ == "__main__":
    # Huge pages for PyTorch's large CPU buffers: read once, before torch's first allocation. Page
    # faults on freshly mapped activation and gradient buffers cost 15-25% of CPU training throughput
    # on the development VM (docs/training.md); on GPU only host-side buffers are affected.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    run_job(main)
