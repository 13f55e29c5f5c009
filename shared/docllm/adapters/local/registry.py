"""ModelRegistry on SQLite: the local stand-in for SageMaker Model Registry.

Same states, same idempotency and the same event as SageMaker: every package
creation and every approval change is announced as a "SageMaker Model Package
State Change" (source ``aws.sagemaker``) on the default bus, with a detail
shaped like AWS's (group, version, ARN, statuses, the metadata maps, times).

Write first, publish after, and never lose the announcement
-----------------------------------------------------------
The change and its announcement are written in one SQLite transaction (the
announcement row holds the whole event); the event is published after the
commit and the row is then marked announced. A crash, or a bus failure, between
the commit and the publish leaves an unannounced row. The caller retries (the
gate's message is redelivered) and calls ``set_status`` (or ``register``) again
with the same arguments: that changes nothing, so it would announce nothing, and
the gate would wait forever for an event SageMaker would have sent. Therefore
every call first publishes the version's unannounced rows, oldest first, so the
retry delivers the lost event. :meth:`LocalModelRegistry.announce_pending` sweeps
every version (for a runtime starting up). Delivery is at least once, like
EventBridge: two processes retrying at the same moment may both publish a row;
the event keeps the id it was given at write time, so consumers can drop the copy.

SageMaker needs none of this: it emits its own events, after its own commit.
"""

from __future__ import annotations

import builtins
import re
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docllm.adapters.local.sqlite import SqliteFile
from docllm.events.envelope import BusEvent
from docllm.exceptions import NotFoundError
from docllm.ports.bus import EventBus
from docllm.ports.registry import ModelRegistry
from docllm.registry.metadata import (
    ROLLBACK_INCIDENT,
    ROLLED_BACK_ALARM,
    customer_metadata,
    metadata_properties,
    model_metrics,
    rollback_metadata,
)
from docllm.registry.models import (
    ApprovalStatus,
    ModelPackage,
    NotApprovedError,
    PackageSpec,
    group_name,
)

DETAIL_TYPE = "SageMaker Model Package State Change"
SOURCE = "aws.sagemaker"
ACCOUNT = "000000000000"
REGION = "local"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packages (
  model_version TEXT PRIMARY KEY, family TEXT NOT NULL, grp TEXT NOT NULL, version INTEGER NOT NULL,
  status TEXT NOT NULL, approval_description TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
  spec TEXT NOT NULL, UNIQUE (grp, version)
);
CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, family TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS aliases (
  family TEXT NOT NULL, alias TEXT NOT NULL, model_version TEXT NOT NULL, PRIMARY KEY (family, alias)
);
CREATE TABLE IF NOT EXISTS announcements (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, model_version TEXT NOT NULL, event TEXT NOT NULL, announced_ms INTEGER
);
CREATE INDEX IF NOT EXISTS announcements_pending ON announcements (model_version) WHERE announced_ms IS NULL;
CREATE TABLE IF NOT EXISTS rollbacks (
  model_version TEXT PRIMARY KEY, alarm TEXT NOT NULL, incident_id TEXT NOT NULL
);
"""

_ARN = re.compile(r":model-package/([^/]+)/(\d+)$")
_COLUMNS = "model_version, family, grp, version, status, approval_description, created_ms, updated_ms, spec"
#: A package row with its rollback marker (a table of its own: data directories made before it get it
#: by ``CREATE TABLE IF NOT EXISTS``, which cannot add a column).
_SELECT = (
    "SELECT p.model_version, p.family, p.grp, p.version, p.status, p.approval_description, p.created_ms, "
    "p.updated_ms, p.spec, r.alarm, r.incident_id FROM packages p LEFT JOIN rollbacks r "
    "ON r.model_version = p.model_version"
)


def package_arn(group: str, version: int) -> str:
    """The local look-alike of a versioned model package ARN (SageMaker's shape, local region and account)."""
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/{version}"


class LocalModelRegistry(ModelRegistry):
    """Parameters
    ----------
    db_path:
        The SQLite file (created 0600).
    default_bus:
        Where the state-change events go, as SageMaker's go to the account's default bus.
    stage:
        Names the groups (``docllm-<stage>-<family>``).
    """

    def __init__(self, db_path: Path, *, default_bus: EventBus, stage: str) -> None:
        self._db = SqliteFile(Path(db_path), _SCHEMA)
        self._bus = default_bus
        self.stage = stage

    # -- port ------------------------------------------------------------------------------------
    def register(self, spec: PackageSpec) -> ModelPackage:
        group = group_name(self.stage, spec.family)
        with self._db.transaction() as conn:
            row = _select(conn, spec.model_version)
            if row is None:
                now = _now_ms()
                conn.execute(
                    "INSERT OR IGNORE INTO groups (name, family, created_ms) VALUES (?, ?, ?)",
                    (group, spec.family, now),
                )
                (last,) = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM packages WHERE grp = ?", (group,)
                ).fetchone()
                conn.execute(
                    f"INSERT INTO packages ({_COLUMNS}) VALUES (?, ?, ?, ?, 'PendingManualApproval', NULL, ?, ?, ?)",
                    (spec.model_version, spec.family, group, last + 1, now, now, spec.model_dump_json()),
                )
                row = _select(conn, spec.model_version)
                assert row is not None
                self._record_announcement(conn, _package(row))
        self._announce(spec.model_version)
        return _package(row)

    def get(self, model_version: str, *, family: str | None = None) -> ModelPackage:
        # ``family`` needs no use here: versions are the table's key.
        row = _select(self._db.connection(), model_version)
        if row is None:
            raise NotFoundError(f"no registered model version {model_version!r}")
        return _package(row)

    def get_by_arn(self, package_arn: str) -> ModelPackage:
        match = _ARN.search(package_arn)
        row = None
        if match is not None:
            row = (
                self._db.connection()
                .execute(f"{_SELECT} WHERE p.grp = ? AND p.version = ?", match.group(1, 2))
                .fetchone()
            )
        # The whole ARN must be ours (region, account), not only its group and version.
        package = _package(row) if row is not None else None
        if package is None or package.package_arn != package_arn:
            raise NotFoundError(f"no registered model package {package_arn!r}")
        return package

    def list(self, family: str | None = None) -> builtins.list[ModelPackage]:
        conn = self._db.connection()
        order = "ORDER BY p.created_ms, p.rowid"
        if family is None:
            rows = conn.execute(f"{_SELECT} {order}").fetchall()
        else:
            rows = conn.execute(f"{_SELECT} WHERE p.family = ? {order}", (family,)).fetchall()
        return [_package(r) for r in rows]

    def set_status(self, model_version: str, status: ApprovalStatus, description: str) -> ModelPackage:
        text = self._checked_status(status, description)
        with self._db.transaction() as conn:
            row = _select(conn, model_version)
            if row is None:
                raise NotFoundError(f"no registered model version {model_version!r}")
            if (row[4], row[5]) != (status, text):
                conn.execute(
                    "UPDATE packages SET status = ?, approval_description = ?, updated_ms = ? WHERE model_version = ?",
                    (status, text, max(_now_ms(), row[7]), model_version),
                )
                # A decision after the rollback replaces it (as on SageMaker, see its adapter).
                conn.execute("DELETE FROM rollbacks WHERE model_version = ?", (model_version,))
                row = _select(conn, model_version)
                assert row is not None
                self._record_announcement(conn, _package(row))
        # Also after a no-op: a retry is how a change whose announcement was lost gets announced.
        self._announce(model_version)
        return _package(row)

    def mark_rolled_back(self, model_version: str, *, alarm: str, incident_id: str, description: str) -> ModelPackage:
        text = self._checked_status("Rejected", description)
        marker = rollback_metadata(alarm, incident_id)
        mark = (marker[ROLLED_BACK_ALARM], marker[ROLLBACK_INCIDENT])
        with self._db.transaction() as conn:
            row = _select(conn, model_version)
            if row is None:
                raise NotFoundError(f"no registered model version {model_version!r}")
            if (row[4], row[5], row[9], row[10]) != ("Rejected", text, *mark):
                conn.execute(
                    "UPDATE packages SET status = 'Rejected', approval_description = ?, updated_ms = ? "
                    "WHERE model_version = ?",
                    (text, max(_now_ms(), row[7]), model_version),
                )
                conn.execute(
                    "INSERT OR REPLACE INTO rollbacks (model_version, alarm, incident_id) VALUES (?, ?, ?)",
                    (model_version, *mark),
                )
                row = _select(conn, model_version)
                assert row is not None
                self._record_announcement(conn, _package(row))
        self._announce(model_version)
        return _package(row)

    def aliases(self, family: str) -> dict[str, str]:
        rows = (
            self._db.connection()
            .execute("SELECT alias, model_version FROM aliases WHERE family = ? ORDER BY alias", (family,))
            .fetchall()
        )
        return {alias: version for alias, version in rows}

    def _write_alias(self, family: str, alias: str, model_version: str | None) -> None:
        with self._db.transaction() as conn:
            if model_version is None:
                conn.execute("DELETE FROM aliases WHERE family = ? AND alias = ?", (family, alias))
                return
            # The port checked the status; check again under the write lock, so a rejection that
            # committed in between cannot slip through.
            row = _select(conn, model_version)
            if row is None or row[4] != "Approved":
                raise NotApprovedError(model_version, alias, row[4] if row else "unregistered")
            conn.execute(
                "INSERT OR REPLACE INTO aliases (family, alias, model_version) VALUES (?, ?, ?)",
                (family, alias, model_version),
            )

    # -- local extras ------------------------------------------------------------------------------
    def announce_pending(self) -> int:
        """Publish every change whose announcement was lost (a crash between commit and publish);
        return how many were published."""
        versions = [
            v
            for (v,) in self._db.connection()
            .execute("SELECT DISTINCT model_version FROM announcements WHERE announced_ms IS NULL")
            .fetchall()
        ]
        return sum(self._announce(v) for v in versions)

    def pending_announcements(self) -> int:
        """How many changes are written but not yet announced."""
        (n,) = self._db.connection().execute("SELECT COUNT(*) FROM announcements WHERE announced_ms IS NULL").fetchone()
        return int(n)

    # -- announcements -----------------------------------------------------------------------------
    def _record_announcement(self, conn: sqlite3.Connection, package: ModelPackage) -> None:
        event = BusEvent(
            id=str(uuid.uuid4()),
            source=SOURCE,
            detail_type=DETAIL_TYPE,
            account=ACCOUNT,
            region=REGION,
            time=package.updated_at.replace(microsecond=0),
            resources=[package.package_arn],
            detail=state_change_detail(package, stage=self.stage),
        )
        conn.execute(
            "INSERT INTO announcements (model_version, event) VALUES (?, ?)",
            (package.model_version, event.model_dump_json(by_alias=True)),
        )

    def _announce(self, model_version: str) -> int:
        """Publish the version's unannounced changes in order, marking each once published."""
        rows = (
            self._db.connection()
            .execute(
                "SELECT seq, event FROM announcements WHERE model_version = ? AND announced_ms IS NULL ORDER BY seq",
                (model_version,),
            )
            .fetchall()
        )
        for seq, body in rows:
            self._bus.publish([BusEvent.model_validate_json(body)])
            with self._db.transaction() as conn:
                conn.execute("UPDATE announcements SET announced_ms = ? WHERE seq = ?", (_now_ms(), seq))
        return len(rows)


def state_change_detail(package: ModelPackage, *, stage: str) -> dict[str, Any]:
    """The ``detail`` SageMaker puts in "SageMaker Model Package State Change" for ``package``."""
    spec = _spec_of(package)
    detail: dict[str, Any] = {
        "ModelPackageGroupName": package.group,
        "ModelPackageVersion": package.package_version,
        "ModelPackageArn": package.package_arn,
        "ModelPackageDescription": package.description,
        "CreationTime": _iso(package.created_at),
        "ModelPackageStatus": "Completed",
        "ModelApprovalStatus": package.status,
        "MetadataProperties": metadata_properties(spec),
        "CustomerMetadataProperties": {
            **customer_metadata(spec, stage=stage),
            **(
                rollback_metadata(package.rolled_back_alarm, package.rollback_incident or "")
                if package.rolled_back_alarm
                else {}
            ),
        },
        "ModelMetrics": model_metrics(spec),
        "LastModifiedTime": _iso(package.updated_at),
    }
    if package.approval_description is not None:
        detail["ApprovalDescription"] = package.approval_description
    return detail


def _spec_of(package: ModelPackage) -> PackageSpec:
    fields = set(PackageSpec.model_fields)
    return PackageSpec.model_validate({k: v for k, v in package.model_dump().items() if k in fields})


def _select(conn: sqlite3.Connection, model_version: str) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = conn.execute(f"{_SELECT} WHERE p.model_version = ?", (model_version,)).fetchone()
    return row


def _package(row: tuple[Any, ...]) -> ModelPackage:
    _, _, group, version, status, approval, created_ms, updated_ms, spec_json, alarm, incident = row
    spec = PackageSpec.model_validate_json(spec_json)
    return ModelPackage(
        **spec.model_dump(),
        group=group,
        package_arn=package_arn(group, version),
        package_version=version,
        status=status,
        approval_description=approval,
        created_at=_from_ms(created_ms),
        updated_at=_from_ms(updated_ms),
        rolled_back_alarm=alarm,
        rollback_incident=incident,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
