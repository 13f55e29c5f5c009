"""Nothing under the data directory is readable by another user (issue 13): every directory is
0700 and every file the platform writes 0600 — databases and their -wal/-shm files, blobs,
``runtime.json``, the lock, job directories and their files, logs — whatever umask the process
that wrote them had, and an older data directory is tightened when the runtime starts."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from docllm.ports.jobs import JobSpec
from docllm.runtime.local import LocalRuntime
from tests.conftest import REPO

JOB = """
import os, pathlib
model = pathlib.Path(os.environ["SM_MODEL_DIR"])
(model / "weights.bin").write_bytes(b"w" * 100)
(model / "sub").mkdir()
(model / "sub" / "config.json").write_text("{}")
ckpt = pathlib.Path(os.environ["DOCLLM_CHECKPOINT_DIR"])
(ckpt / "step-1.pt").write_bytes(b"c")
out = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"])
(out / "metrics.json").write_text("{}")
print("done")
"""


def loose(root: Path) -> list[str]:
    """Every path under ``root`` (root included) that another user could read or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) != want:
            found.append(f"{oct(stat.S_IMODE(st.st_mode))} {path.relative_to(root.parent)}")
    return found


@pytest.mark.slow
def test_nothing_under_the_data_directory_is_readable_by_another_user(tmp_path: Path):
    data = tmp_path / "data"
    # An older data directory: created under umask 022 before the platform tightened anything.
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "old").mkdir(mode=0o755)
    (data / "old" / "notes.txt").write_text("old")
    (data / "old" / "notes.txt").chmod(0o644)
    sqlite3.connect(data / "state.db").execute("CREATE TABLE t (x)").connection.close()
    (data / "state.db").chmod(0o644)

    rt = LocalRuntime(data, template=REPO / "template.yaml", port=0, auth=True)
    rt.start()
    try:
        assert rt.platform is not None
        # `docllm ingest` is another process, with the user's umask: its blobs must be private too.
        pages = tmp_path / "pages"
        pages.mkdir()
        (pages / "buckets.md").write_text("# Buckets\n\n## Versioning\n\nVersioning keeps every version.\n")
        done = subprocess.run(
            [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(data), "ingest", "--service", "s3",
             str(pages), "--timeout", "120"],
            cwd=REPO, capture_output=True, text=True, timeout=180, umask=0o022, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert rt.wait_idle(60)

        module = tmp_path / "jobmod"
        module.mkdir()
        (module / "perm_job.py").write_text(textwrap.dedent(JOB))
        raw = rt.platform.settings.raw_bucket
        spec = JobSpec(
            name="perm-job",
            image="train",
            entry_point="perm_job",
            channels={"train": f"s3://{raw}/s3/"},
            output_uri=f"s3://{rt.platform.settings.processed_bucket}/jobs",
            checkpoint_uri=f"s3://{rt.platform.settings.processed_bucket}/checkpoints/perm-job",
            environment={"PYTHONPATH": f"{module}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
        )
        old = os.umask(0o022)  # whatever umask the process has, the runner and the job write privately
        try:
            rt.platform.jobs.submit(spec)
            assert rt.platform.jobs.wait("perm-job", 120).status == "Completed"  # type: ignore[attr-defined]
        finally:
            os.umask(old)
        assert rt.wait_idle(60)
        job = data / "jobs" / "perm-job"
        assert (job / "job.log").read_text().strip() == "done"
        assert (job / "ml" / "model" / "sub" / "config.json").exists()
        assert list((data / "objects" / "blobs").rglob("*")), "no blob was written"
        assert any(p.name.endswith("-wal") for p in data.rglob("*")), "no WAL file to check"
        assert (data / "runtime.json").exists() and (data / "api-key").exists()
        assert loose(data) == []
    finally:
        rt.stop()
    assert loose(data) == []
