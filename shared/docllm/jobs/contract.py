"""The SageMaker training container contract, read from inside a job.

SageMaker starts the container with ``/opt/ml/input/config/hyperparameters.json``
(every value a string), one directory per channel under ``/opt/ml/input/data``,
``SM_*`` variables pointing at them, ``/opt/ml/model`` for artefacts (tarred to
``model.tar.gz`` on exit), ``/opt/ml/checkpoints`` synced to S3, and
``/opt/ml/output/failure`` for the reason of a failure. The local job runner
lays out the same tree under the data directory and sets the same variables,
so a job module cannot tell the two apart.

Example::

    from docllm.jobs.contract import JobEnvironment, run_job

    def main(env: JobEnvironment) -> None:
        vocab = int(env.hyperparameters["vocab_size"])
        ...

    if __name__ == "__main__":
        run_job(main)
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

DEFAULT_PREFIX = Path("/opt/ml")


@dataclass(frozen=True)
class JobEnvironment:
    hyperparameters: dict[str, str]
    channels: dict[str, Path]
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    input_config_dir: Path
    hosts: list[str]
    current_host: str
    num_gpus: int

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> JobEnvironment:
        env = dict(os.environ if environ is None else environ)
        prefix = Path(env.get("DOCLLM_SM_PREFIX", str(DEFAULT_PREFIX)))
        config_dir = Path(env.get("SM_INPUT_CONFIG_DIR", str(prefix / "input" / "config")))
        hp_file = config_dir / "hyperparameters.json"
        hyperparameters: dict[str, str] = {}
        if hp_file.exists():
            raw = json.loads(hp_file.read_text(encoding="utf-8"))
            # SageMaker passes every value as a string; normalise what a local caller wrote.
            hyperparameters = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
        channels: dict[str, Path] = {}
        data_dir = Path(env.get("SM_INPUT_DIR", str(prefix / "input"))) / "data"
        for name in json.loads(env.get("SM_CHANNELS", "[]")):
            channels[name] = Path(env.get(f"SM_CHANNEL_{name.upper()}", str(data_dir / name)))
        output_dir = Path(env.get("SM_OUTPUT_DIR", str(prefix / "output")))
        return cls(
            hyperparameters=hyperparameters,
            channels=channels,
            model_dir=Path(env.get("SM_MODEL_DIR", str(prefix / "model"))),
            output_dir=output_dir,
            output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR", str(output_dir / "data"))),
            checkpoint_dir=Path(env.get("DOCLLM_CHECKPOINT_DIR", str(prefix / "checkpoints"))),
            input_config_dir=config_dir,
            hosts=json.loads(env.get("SM_HOSTS", '["algo-1"]')),
            current_host=env.get("SM_CURRENT_HOST", "algo-1"),
            num_gpus=int(env.get("SM_NUM_GPUS", "0")),
        )

    def hp(self, name: str, default: str | None = None) -> str:
        """A hyperparameter, or a clear error naming it when it is missing."""
        if name in self.hyperparameters:
            return self.hyperparameters[name]
        if default is not None:
            return default
        raise JobInputError(f"missing hyperparameter {name!r}")


class JobInputError(Exception):
    """The job was started with wrong hyperparameters or channels (a permanent failure)."""


def write_failure(env: JobEnvironment, reason: str) -> None:
    """Leave the reason where SageMaker reads it (FailureReason is capped at 1 KiB)."""
    env.output_dir.mkdir(parents=True, exist_ok=True)
    (env.output_dir / "failure").write_text(reason[:1024], encoding="utf-8")


def run_job(main: Callable[[JobEnvironment], None], environ: dict[str, str] | None = None) -> NoReturn:
    """Run ``main`` under the contract: exit 0 on success, else write the failure reason and exit 1."""
    env = JobEnvironment.from_env(environ)
    try:
        main(env)
    except JobInputError as e:
        write_failure(env, f"ClientError: {e}")
        print(f"job input error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # a job must always leave a reason behind
        write_failure(env, f"AlgorithmError: {type(e).__name__}: {e}")
        traceback.print_exc()
        sys.exit(1)
    sys.exit(0)


def publish_directory(src: Path, uri: str) -> list[str]:
    """Upload every file under ``src`` to the ``s3://`` prefix ``uri``; ``result.json`` goes last.

    Publishing ``result.json`` last makes it the commit marker: a stage that
    finds it can trust every other file is there. Uses the object store of
    the configured backend (the job's role on AWS, the data directory locally).
    """
    from docllm.bootstrap import build_platform
    from docllm.ports.objects import split_uri

    objects = build_platform().objects
    bucket, prefix = split_uri(uri if uri.endswith("/") else uri + "/")
    files = sorted((p for p in Path(src).rglob("*") if p.is_file()), key=lambda p: (p.name == "result.json", str(p)))
    keys = []
    for path in files:
        key = prefix + path.relative_to(src).as_posix()
        objects.put_file(bucket, key, path)
        keys.append(key)
    return keys
