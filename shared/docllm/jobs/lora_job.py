"""LoRA job: a base model and a dataset version in; an adapter, a merged export and ``result.json`` out.

Runs under the SageMaker container contract (:mod:`docllm.jobs.contract`) in the training image
(``containers/train/``, entry point ``docllm.jobs.lora_job``), one process. docs/lora.md describes the
path; :mod:`docllm.lora` holds the logic.

Hyperparameters (all strings):
    ``lora_config``         JSON: :class:`docllm.lora.config.LoraConfig` (``base_model_uri`` required)
    ``model_version``       id of this model (default: the job's host name and time)
    ``family``, ``dataset_version``, ``tokenizer_version`` (the base's), ``base_model_version``
                            recorded in the result and the model cards
    ``output_uri``          s3:// prefix to publish everything to, ``result.json`` last (empty: keep local)
Channels: ``base_model`` (the base's Hugging Face directory: ``config.json``, safetensors, tokenizer
files) and ``dataset`` (``train.jsonl``, ``validation.jsonl``, ``manifest.json``).

Output (the model directory, published as is):
    ``hf/``                 the merged model (``AutoModelForCausalLM`` loads it; Bedrock Custom Model Import)
    ``adapter/``            ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT, vLLM ``--lora-modules``)
    ``data/``               ``train.jsonl``, ``validation.jsonl``: the prompt/completion pairs trained on
    ``subset.json``         the TF-IDF subset (every kept section with its scores), when configured
    ``history.jsonl``       the loss curves, in the training job's shape
    ``result.json``         :class:`docllm.lora.result.LoraJobResult` (a ``TrainingJobResult``)

Smoke run on a laptop (after laying out /tmp/sm as SageMaker would)::

    DOCLLM_SM_PREFIX=/tmp/sm SM_CHANNELS='["base_model","dataset"]' python -m docllm.jobs.lora_job
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docllm.jobs import contract
from docllm.jobs.contract import JobEnvironment, JobInputError, run_job, write_failure
from docllm.lora.config import LoraConfig
from docllm.lora.exceptions import LoraConfigError

if TYPE_CHECKING:
    from docllm.lora.train import LogPoint

#: Exit status of a run stopped by SIGTERM (128 + 15), as the training job's.
EXIT_INTERRUPTED = 143
#: Split records encoded for the unigram baseline, per split (the training job reads 2,000 windows).
UNIGRAM_RECORDS = 2000


def read_lora_config(env: JobEnvironment) -> LoraConfig:
    raw = env.hp("lora_config")
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as e:
        raise JobInputError(f"hyperparameter 'lora_config' is not valid JSON: {e}") from e
    if not isinstance(values, dict):
        raise JobInputError("hyperparameter 'lora_config' must be a JSON object")
    try:
        return LoraConfig.from_overrides(values)
    except LoraConfigError as e:
        raise JobInputError(str(e)) from e


def _channel(env: JobEnvironment, name: str) -> Path:
    path = env.channels.get(name)
    if path is None or not path.is_dir():
        raise JobInputError(f"channel {name!r} is missing (got channels {sorted(env.channels)})")
    return path


def file_digests(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``, by relative path."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[path.relative_to(directory).as_posix()] = h.hexdigest()
    return out


def unigram_baseline(tokenizer: Any, dataset_dir: Path) -> float | None:
    """The unigram cross-entropy of the validation split under the base's tokenizer (the gate's
    ``heldout_loss`` threshold, as for a trained model); None without a validation split."""
    import numpy as np

    from docllm.dataset.versions import read_split_file
    from docllm.training.baselines import unigram_cross_entropy

    def sequences(name: str) -> list[np.ndarray]:
        path = dataset_dir / name
        if not path.exists():
            return []
        records = islice(read_split_file(path), UNIGRAM_RECORDS)
        return [np.asarray(tokenizer(r.text, add_special_tokens=False)["input_ids"]) for r in records]

    val = [s for s in sequences("validation.jsonl") if len(s) > 1]
    if not val:
        return None
    return unigram_cross_entropy(sequences("train.jsonl"), val, len(tokenizer))


def _base_record(base_dir: Path) -> tuple[dict[str, Any], str, str]:
    """The base's config for the result (ours when it is a docllm export), its variant and architecture."""
    from docllm.model.export import CONFIG_FILE

    hf_config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    architecture = (hf_config.get("architectures") or [hf_config.get("model_type", "unknown")])[0]
    if (base_dir / CONFIG_FILE).exists():
        ours = json.loads((base_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        return ours, str(ours.get("variant", hf_config.get("model_type"))), architecture
    return hf_config, str(hf_config.get("model_type", "unknown")), architecture


def main(env: JobEnvironment) -> None:
    from docllm.lora.train import OFFLINE_ENVIRONMENT

    # Before transformers and huggingface_hub are imported: they read these once.
    os.environ.update(OFFLINE_ENVIRONMENT)
    from transformers.utils import logging as hf_logging

    from docllm.dataset.versions import read_split_file
    from docllm.lora.data import build_lora_data, write_jsonl
    from docllm.lora.result import BaseModelRecord, LoraJobResult
    from docllm.lora.subset import select_sections
    from docllm.lora.train import (
        LoraInterrupted,
        encode_pair,
        export_merged,
        load_base_model,
        load_tokenizer,
        resolve_device,
        save_adapter,
        train_lora,
    )
    from docllm.provenance import code_identity, environment_identity

    hf_logging.disable_progress_bar()
    started = time.monotonic()
    cfg = read_lora_config(env)
    base_dir, dataset_dir = _channel(env, "base_model"), _channel(env, "dataset")
    train_file = dataset_dir / "train.jsonl"
    if not train_file.is_file():
        raise JobInputError(f"dataset channel has no train.jsonl: {sorted(p.name for p in dataset_dir.iterdir())}")
    out = env.model_dir
    out.mkdir(parents=True, exist_ok=True)
    model_version = env.hp("model_version", f"{env.current_host}-{time.strftime('%Y%m%d%H%M%S')}")
    base_version = env.hp("base_model_version", "") or None
    tokenizer = load_tokenizer(base_dir)

    # The sections to build examples from: all of train.jsonl, or its TF-IDF subset.
    subset = None
    if cfg.subset is not None:
        subset = select_sections(read_split_file(train_file), cfg.subset)
        (out / "subset.json").write_text(subset.model_dump_json(indent=1), encoding="utf-8")
        kept = subset.kept_ids()

        def source() -> Any:
            return (r for r in read_split_file(train_file) if r.chunk_id in kept)
    else:

        def source() -> Any:
            return read_split_file(train_file)

    data = build_lora_data(
        source,
        cfg.answer_tuning,
        context_length=cfg.max_length,
        validation_share=cfg.validation_share,
        seed=cfg.seed,
        fits=lambda p: len(encode_pair(tokenizer, p.prompt, p.completion).input_ids) <= cfg.max_length,
    )
    if not data.train:
        raise JobInputError(
            f"the answer-tuning builder found no example in train.jsonl that fits max_length={cfg.max_length}"
            f" ({data.unfit} too long): nothing to train on"
        )
    files = {
        "data/train.jsonl": write_jsonl(out / "data" / "train.jsonl", data.train),
        "data/validation.jsonl": write_jsonl(out / "data" / "validation.jsonl", data.validation),
    }
    summary = data.summary(files)
    print(json.dumps({"data": summary.model_dump(exclude={"files"})}), file=sys.stderr)

    def on_log(point: LogPoint) -> None:
        print(json.dumps(asdict(point)), file=sys.stderr, flush=True)

    model = load_base_model(base_dir, dtype=cfg.dtype, device=resolve_device(cfg.device))
    # SageMaker's stop (and a spot interruption) is a SIGTERM: the loop ends at the next step.
    stop = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if in_main else None
    try:
        peft_model, outcome = train_lora(
            model,
            tokenizer,
            cfg,
            [(p.prompt, p.completion) for p in data.train],
            [(p.prompt, p.completion) for p in data.validation],
            on_log=on_log,
            stop=stop,
        )
    except LoraInterrupted as e:
        write_failure(env, f"Interrupted: {e}; a restart trains again from the base model")
        raise SystemExit(EXIT_INTERRUPTED) from e
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    family = env.hp("family", "") or None
    card = {
        "family": family or "custom",
        "model_version": model_version,
        "method": "LoRA",
        "base model": cfg.base_model_uri + (f" (version {base_version})" if base_version else ""),
        "dataset_version": env.hp("dataset_version", "unknown"),
        "rank / alpha": f"{cfg.r} / {cfg.alpha}",
        "target modules": ", ".join(outcome.target_modules),
        "training examples": summary.train_examples,
        "validation loss (completions)": (
            f"{outcome.final_val_loss:.4f}" if outcome.final_val_loss is not None else "n/a"
        ),
    }
    save_adapter(peft_model, out / "adapter", base_model_uri=cfg.base_model_uri, card=card)
    export_merged(peft_model, base_dir, out / "hf", card=card)
    with (out / "history.jsonl").open("w", encoding="utf-8") as f:
        for point in outcome.history:
            f.write(json.dumps(asdict(point)) + "\n")
    model_config, variant, architecture = _base_record(base_dir)
    result = LoraJobResult(
        model_version=model_version,
        family=family,
        dataset_version=env.hp("dataset_version", "") or None,
        tokenizer_version=env.hp("tokenizer_version", "") or None,
        variant=variant,
        hf_architecture=architecture,
        n_params=outcome.n_params,
        final_train_loss=outcome.final_train_loss,
        final_val_loss=outcome.final_val_loss,
        best_val_loss=outcome.best_val_loss,
        unigram_val_loss=unigram_baseline(tokenizer, dataset_dir),
        tokens_seen=outcome.tokens_seen,
        steps=outcome.steps,
        elapsed_s=round(time.monotonic() - started, 3),
        tokens_per_s=round(outcome.tokens_per_s, 1),
        world_size=1,
        device=outcome.device,
        model_config_=model_config,
        train_config=cfg.model_dump(mode="json"),
        provenance={"code": code_identity(), "environment": environment_identity()},
        base_model=BaseModelRecord(
            uri=cfg.base_model_uri, version=base_version, architecture=architecture, files=file_digests(base_dir)
        ),
        trainable_params=outcome.trainable_params,
        initial_val_loss=outcome.initial_val_loss,
        completion_tokens_seen=outcome.completion_tokens_seen,
        data=summary,
        subset=subset.summary() if subset is not None else None,
        subset_path="subset.json" if subset is not None else None,
        dropped_too_long=outcome.dropped_too_long,
    )
    (out / "result.json").write_text(result.model_dump_json(indent=2, by_alias=True), encoding="utf-8")
    output_uri = env.hp("output_uri", "")
    if output_uri:
        contract.publish_directory(out, output_uri)  # result.json goes last
    print(
        json.dumps(
            {
                "model_version": model_version,
                "initial_val_loss": outcome.initial_val_loss,
                "val_loss": outcome.final_val_loss,
                "steps": outcome.steps,
            }
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_job(main)
