"""The training image's ``train`` script, run without Docker: torchrun for several GPUs, except for the
LoRA job, which is always one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "containers" / "train" / "train"


def _launch(tmp_path: Path, entry: str | None, gpus: int) -> str:
    """What the script execs, with ``python -m`` and ``torchrun`` replaced by stand-ins that say so."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(
        "#!/usr/bin/env bash\n"
        'if [[ "$1" == "-m" ]]; then echo "python -m $2"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    (bin_dir / "torchrun").write_text('#!/usr/bin/env bash\necho "torchrun $*"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SM_NUM_GPUS": str(gpus)}
    if entry:
        env["DOCLLM_ENTRY_POINT"] = entry
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize("gpus", [0, 1, 4])
def test_the_lora_job_is_one_process_whatever_the_gpus(tmp_path: Path, gpus: int) -> None:
    assert _launch(tmp_path, "docllm.jobs.lora_job", gpus) == "python -m docllm.jobs.lora_job"


def test_training_uses_torchrun_on_several_gpus_and_python_on_one(tmp_path: Path) -> None:
    assert _launch(tmp_path, None, 1) == "python -m docllm.jobs.train_job"
    assert _launch(tmp_path, None, 4).startswith("torchrun --nnodes 1 --node_rank 0 --nproc_per_node 4")
