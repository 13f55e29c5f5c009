"""One LoRA job run per session, shared by the job's tests and the vLLM adapter test."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from docllm.jobs.contract import JobEnvironment
from docllm.lora.result import LoraJobResult
from tests.integration.lora.base import build_base, write_dataset
from tests.support import torch_threads

BASE_URI = "s3://artifacts/models/tiny-base/v1/hf/"
OUTPUT_URI = "s3://artifacts/models/tiny-lora/lora-1/"
LORA = {
    "base_model_uri": BASE_URI,
    "r": 8,
    "alpha": 16,
    "dropout": 0.0,
    "learning_rate": 0.01,
    "max_steps": 24,
    "micro_batch_size": 4,
    "max_length": 256,
    "validation_share": 0.25,
    "eval_interval": 8,
    "log_interval": 4,
    "device": "cpu",
    "answer_tuning": {"distractors": 0},
    "subset": {"share": 0.75, "informative_terms": 50, "rare_terms": 50},
}


@dataclass
class LoraRun:
    base: Path
    dataset: Path
    model_dir: Path
    result: LoraJobResult
    published: list[tuple[Path, str]]


def layout(root: Path, base: Path, hyperparameters: dict[str, str]) -> dict[str, str]:
    """The SageMaker tree a job sees: channels copied in, hyperparameters as strings."""
    data = root / "input" / "data"
    shutil.copytree(base, data / "base_model")
    write_dataset(data / "dataset")
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return {"DOCLLM_SM_PREFIX": str(root), "SM_CHANNELS": '["base_model", "dataset"]'}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads.one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base(tmp_path_factory.mktemp("lora-base"))


@pytest.fixture(scope="session")
def lora_run(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoraRun]:
    from docllm.jobs.lora_job import main

    root = tmp_path_factory.mktemp("lora-job")
    environ = layout(
        root,
        tiny_base,
        {
            "lora_config": json.dumps(LORA),
            "family": "tiny-lora",
            "model_version": "lora-1",
            "dataset_version": "ds-lora-test",
            "tokenizer_version": "tok-1",
            "base_model_version": "v1",
            "output_uri": OUTPUT_URI,
        },
    )
    published: list[tuple[Path, str]] = []
    # torch_threads.one_thread as the autouse fixture has it (a session fixture cannot use a function one).
    with pytest.MonkeyPatch.context() as mp, torch_threads.one_thread():
        # The job sets the hub-offline variables in its own process; here that is the test's.
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
            mp.setenv(name, "1")
        mp.setattr("docllm.jobs.contract.publish_directory", lambda src, uri: published.append((src, uri)))
        env = JobEnvironment.from_env(environ)
        main(env)
    result = LoraJobResult.model_validate_json((env.model_dir / "result.json").read_text())
    yield LoraRun(tiny_base, root / "input" / "data" / "dataset", env.model_dir, result, published)
