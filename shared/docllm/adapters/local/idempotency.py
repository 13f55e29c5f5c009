"""A Powertools idempotency persistence layer on SQLite.

It keeps the same conditional-write rules as Powertools' DynamoDB layer (a
record may be taken when absent, expired, or in progress past its Lambda
deadline), so a handler behaves identically under redelivery on both backends.
"""

from __future__ import annotations

import time
from pathlib import Path

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

from docllm.adapters.local.sqlite import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
  id TEXT PRIMARY KEY, status TEXT NOT NULL, expiration INTEGER, in_progress_expiration INTEGER,
  data TEXT, validation TEXT
);
"""


class SqliteIdempotencyStore(BasePersistenceLayer):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self._db = SqliteFile(path, _SCHEMA)

    def _get_record(self, idempotency_key: str) -> DataRecord:
        row = (
            self._db.connection()
            .execute(
                "SELECT status, expiration, in_progress_expiration, data, validation FROM idempotency WHERE id = ?",
                (idempotency_key,),
            )
            .fetchone()
        )
        if row is None:
            raise IdempotencyItemNotFoundError
        status, expiration, in_progress, data, validation = row
        return DataRecord(
            idempotency_key=idempotency_key,
            status=status,
            expiry_timestamp=expiration,
            in_progress_expiry_timestamp=in_progress,
            response_data=data or "",
            payload_hash=validation or "",
        )

    def _put_record(self, data_record: DataRecord) -> None:
        now = int(time.time())
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT status, expiration, in_progress_expiration FROM idempotency WHERE id = ?",
                (data_record.idempotency_key,),
            ).fetchone()
            if row is not None:
                status, expiration, in_progress = row
                expired = expiration is not None and expiration < now
                stale = status == "INPROGRESS" and in_progress is not None and in_progress < now * 1000
                if not (expired or stale):
                    raise IdempotencyItemAlreadyExistsError
            conn.execute(
                "INSERT OR REPLACE INTO idempotency "
                "(id, status, expiration, in_progress_expiration, data, validation) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    data_record.idempotency_key,
                    data_record.status,
                    data_record.expiry_timestamp,
                    data_record.in_progress_expiry_timestamp,
                    data_record.response_data,
                    data_record.payload_hash,
                ),
            )

    def _update_record(self, data_record: DataRecord) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE idempotency SET status = ?, expiration = ?, data = ?, validation = ? WHERE id = ?",
                (
                    data_record.status,
                    data_record.expiry_timestamp,
                    data_record.response_data,
                    data_record.payload_hash,
                    data_record.idempotency_key,
                ),
            )

    def _delete_record(self, data_record: DataRecord) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM idempotency WHERE id = ?", (data_record.idempotency_key,))


def release_in_progress(path: Path) -> int:
    """Drop INPROGRESS records of invocations that died with the runtime.

    On AWS a redelivery waits out the queue's visibility timeout (six times the
    function timeout), by which time Powertools' in-progress expiry has passed;
    the local runtime redelivers at once on restart, so it releases them itself.
    """
    if not path.exists():
        return 0
    db = SqliteFile(path, _SCHEMA)
    with db.transaction() as conn:
        return conn.execute("DELETE FROM idempotency WHERE status = 'INPROGRESS'").rowcount
