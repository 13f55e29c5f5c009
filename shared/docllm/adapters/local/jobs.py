"""JobRunner as local subprocesses that follow the SageMaker training container contract.

Each job gets the tree SageMaker mounts at ``/opt/ml`` under
``<data dir>/jobs/<name>/ml``: ``input/config/hyperparameters.json``,
``inputdataconfig.json``, ``resourceconfig.json``, one directory per channel
with the channel's S3 prefix copied in, ``model/``, ``output/`` and
``checkpoints/``; the ``SM_*`` variables point at them. When the process
exits, the runner does what SageMaker does: syncs checkpoints to the
checkpoint URI, tars ``model/`` to ``<output>/<job>/output/model.tar.gz``,
reads ``output/failure``, and puts the same "SageMaker Training Job State
Change" event on the default bus. Everything under the job's directory is private (0700/0600):
the runner creates its files so, and the job runs under umask 077.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from docllm.adapters.local.files import UMASK, open_private, private_dir, write_private
from docllm.adapters.local.sqlite import SqliteFile
from docllm.events.envelope import BusEvent
from docllm.exceptions import ConflictError, NotFoundError
from docllm.ports.bus import EventBus
from docllm.ports.jobs import JobDescription, JobRunner, JobSpec
from docllm.ports.objects import ObjectStore, split_uri

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  name TEXT PRIMARY KEY, spec TEXT NOT NULL, status TEXT NOT NULL, pid INTEGER,
  failure TEXT, artifacts TEXT, created_ms INTEGER NOT NULL, ended_ms INTEGER
);
"""


class LocalJobRunner(JobRunner):
    def __init__(
        self,
        root: Path,
        *,
        objects: ObjectStore,
        default_bus: EventBus,
        environment: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.root = Path(root)
        self._db = SqliteFile(self.root / "jobs.db", _SCHEMA)
        self._objects = objects
        self._bus = default_bus
        self._environment = dict(environment or {})
        self._python = python
        self._threads: dict[str, threading.Thread] = {}
        self.on_log: Callable[[str, str], None] | None = None

    # -- port ----------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        job_dir = self.root / spec.name
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE name = ?", (spec.name,)).fetchone():
                raise ConflictError(f"a training job named {spec.name!r} already exists")
            conn.execute(
                "INSERT INTO jobs (name, spec, status, created_ms) VALUES (?, ?, 'InProgress', ?)",
                (spec.name, spec.model_dump_json(), int(time.time() * 1000)),
            )
        ml = job_dir / "ml"
        env = self._prepare(spec, ml)
        log = os.fdopen(open_private(job_dir / "job.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab")
        proc = subprocess.Popen(
            [self._python, "-m", spec.entry_point],
            cwd=job_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C of `docllm up` must not kill the job mid-checkpoint
            umask=UMASK,  # what the job writes (model, checkpoints, output) is private too
        )
        log.close()
        with self._db.transaction() as conn:
            conn.execute("UPDATE jobs SET pid = ? WHERE name = ?", (proc.pid, spec.name))
        self._emit(spec, "InProgress", "Starting")
        thread = threading.Thread(target=self._watch, args=(spec, proc, ml), name=f"job-{spec.name}", daemon=True)
        self._threads[spec.name] = thread
        thread.start()
        return f"arn:aws:sagemaker:local:000000000000:training-job/{spec.name}"

    def describe(self, name: str) -> JobDescription:
        row = (
            self._db.connection()
            .execute("SELECT spec, status, failure, artifacts FROM jobs WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            raise NotFoundError(f"no training job named {name!r}")
        spec = JobSpec.model_validate_json(row[0])
        return JobDescription(
            name=name,
            status=row[1],
            failure_reason=row[2],
            model_artifacts_uri=row[3],
            hyperparameters=spec.hyperparameters,
            tags=spec.tags,
        )

    def stop(self, name: str) -> None:
        row = self._db.connection().execute("SELECT pid, status FROM jobs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no training job named {name!r}")
        pid, status = row
        if status == "InProgress" and pid:
            with self._db.transaction() as conn:
                conn.execute("UPDATE jobs SET status = 'Stopping' WHERE name = ?", (name,))
            # SIGTERM as SageMaker sends on stop/spot interruption: the job saves a checkpoint and exits.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)

    # -- local extras --------------------------------------------------------
    def wait(self, name: str, timeout_s: float = 600) -> JobDescription:
        thread = self._threads.get(name)
        if thread is not None:
            thread.join(timeout_s)
        return self.describe(name)

    def list_jobs(self) -> list[JobDescription]:
        names = [r[0] for r in self._db.connection().execute("SELECT name FROM jobs ORDER BY created_ms").fetchall()]
        return [self.describe(n) for n in names]

    def recover(self) -> list[str]:
        """Fail jobs left running by a runtime that died: nothing waits for their exit any more."""
        failed = []
        rows = (
            self._db.connection()
            .execute("SELECT name, spec, pid FROM jobs WHERE status IN ('InProgress', 'Stopping')")
            .fetchall()
        )
        for name, spec_json, pid in rows:
            if pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)
            reason = "the local runtime stopped while the job ran; start it again to retry"
            self._finish(JobSpec.model_validate_json(spec_json), "Failed", reason, None)
            failed.append(name)
        return failed

    # -- internals -----------------------------------------------------------
    def _prepare(self, spec: JobSpec, ml: Path) -> dict[str, str]:
        config = private_dir(ml / "input" / "config")
        for d in ("model", "output/data", "checkpoints"):
            private_dir(ml / d)
        hps = {**spec.hyperparameters, "entry_point": spec.entry_point}
        write_private(config / "hyperparameters.json", json.dumps(hps))
        write_private(
            config / "inputdataconfig.json",
            json.dumps(
                {c: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"} for c in spec.channels}
            ),
        )
        write_private(
            config / "resourceconfig.json",
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "lo"}),
        )
        for channel, uri in spec.channels.items():
            target = private_dir(ml / "input" / "data" / channel)
            bucket, prefix = split_uri(uri)
            for info in self._objects.list(bucket, prefix):
                rel = info.key[len(prefix) :].lstrip("/") or Path(info.key).name
                self._objects.download_file(bucket, info.key, target / rel)
        if spec.checkpoint_uri:
            # SageMaker restores the checkpoint prefix into /opt/ml/checkpoints before starting: resume works.
            bucket, prefix = split_uri(spec.checkpoint_uri)
            for info in self._objects.list(bucket, prefix):
                self._objects.download_file(bucket, info.key, ml / "checkpoints" / info.key[len(prefix) :].lstrip("/"))
        env = dict(os.environ)
        env.update(self._environment)
        env.update(spec.environment)
        env.update(
            {
                "DOCLLM_SM_PREFIX": str(ml),
                "DOCLLM_CHECKPOINT_DIR": str(ml / "checkpoints"),
                "SM_MODEL_DIR": str(ml / "model"),
                "SM_OUTPUT_DIR": str(ml / "output"),
                "SM_OUTPUT_DATA_DIR": str(ml / "output" / "data"),
                "SM_INPUT_DIR": str(ml / "input"),
                "SM_INPUT_CONFIG_DIR": str(config),
                "SM_CHANNELS": json.dumps(sorted(spec.channels)),
                "SM_HPS": json.dumps(hps),
                "SM_HOSTS": json.dumps(["algo-1"]),
                "SM_CURRENT_HOST": "algo-1",
                "SM_NUM_GPUS": "0",
                "SM_NUM_CPUS": str(os.cpu_count() or 1),
                "SM_TRAINING_ENV": json.dumps({"job_name": spec.name, "hyperparameters": hps}),
                "TRAINING_JOB_NAME": spec.name,
                "PYTHONUNBUFFERED": "1",
            }
        )
        for channel in spec.channels:
            env[f"SM_CHANNEL_{channel.upper()}"] = str(ml / "input" / "data" / channel)
        return env

    def _watch(self, spec: JobSpec, proc: subprocess.Popen[bytes], ml: Path) -> None:
        code = proc.wait()
        failure_file = ml / "output" / "failure"
        status_row = self._db.connection().execute("SELECT status FROM jobs WHERE name = ?", (spec.name,)).fetchone()
        stopping = status_row is not None and status_row[0] == "Stopping"
        try:
            self._sync_checkpoints(spec, ml)
            artifacts = self._package_model(spec, ml) if code == 0 else None
        except Exception as e:  # an upload failure fails the job, as it would on SageMaker
            code, artifacts = 1, None
            private_dir(failure_file.parent)
            write_private(failure_file, f"InternalServerError: uploading artefacts failed: {e}")
        if code == 0:
            self._finish(spec, "Completed", None, artifacts)
        elif stopping:
            self._finish(spec, "Stopped", None, None)
        else:
            reason = failure_file.read_text(encoding="utf-8").strip() if failure_file.exists() else ""
            self._finish(spec, "Failed", reason or f"AlgorithmError: the job exited with code {code}", None)

    def _sync_checkpoints(self, spec: JobSpec, ml: Path) -> None:
        if not spec.checkpoint_uri:
            return
        bucket, prefix = split_uri(spec.checkpoint_uri)
        root = ml / "checkpoints"
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(root).as_posix()}".lstrip("/")
            self._objects.put_file(bucket, key, path)

    def _package_model(self, spec: JobSpec, ml: Path) -> str:
        bucket, prefix = split_uri(spec.output_uri)
        tar_path = ml / "output" / "model.tar.gz"
        with os.fdopen(open_private(tar_path), "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
            for path in sorted((ml / "model").rglob("*")):
                tar.add(path, arcname=path.relative_to(ml / "model").as_posix(), recursive=False)
        key = f"{prefix.rstrip('/')}/{spec.name}/output/model.tar.gz".lstrip("/")
        self._objects.put_file(bucket, key, tar_path)
        return f"s3://{bucket}/{key}"

    def _finish(self, spec: JobSpec, status: str, failure: str | None, artifacts: str | None) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = ?, failure = ?, artifacts = ?, ended_ms = ? WHERE name = ?",
                (status, failure, artifacts, int(time.time() * 1000), spec.name),
            )
        self._emit(spec, status, status, failure_reason=failure, artifacts=artifacts)

    def _emit(
        self,
        spec: JobSpec,
        status: str,
        secondary: str,
        *,
        failure_reason: str | None = None,
        artifacts: str | None = None,
    ) -> None:
        arn = f"arn:aws:sagemaker:local:000000000000:training-job/{spec.name}"
        now_ms = str(int(time.time() * 1000))
        detail: dict[str, object] = {
            "TrainingJobName": spec.name,
            "TrainingJobArn": arn,
            "TrainingJobStatus": status,
            "SecondaryStatus": secondary,
            "HyperParameters": {**spec.hyperparameters, "entry_point": spec.entry_point},
            "AlgorithmSpecification": {"TrainingImage": spec.image, "TrainingInputMode": "File"},
            "InputDataConfig": [
                {"ChannelName": c, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": u}}}
                for c, u in spec.channels.items()
            ],
            "OutputDataConfig": {"S3OutputPath": spec.output_uri},
            "ResourceConfig": {
                "InstanceType": spec.instance_type,
                "InstanceCount": spec.instance_count,
                "VolumeSizeInGB": spec.volume_gb,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_runtime_s},
            "CreationTime": now_ms,
            "LastModifiedTime": now_ms,
            "Tags": dict(spec.tags),
        }
        if failure_reason:
            detail["FailureReason"] = failure_reason
        if artifacts:
            detail["ModelArtifacts"] = {"S3ModelArtifacts": artifacts}
        self._bus.publish(
            [
                BusEvent(
                    source="aws.sagemaker",
                    detail_type="SageMaker Training Job State Change",
                    resources=[arn],
                    detail=detail,
                )
            ]
        )
