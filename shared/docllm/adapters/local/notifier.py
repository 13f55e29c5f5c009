"""Notifier of the local platform: one JSON line per notification in ``notifications.jsonl`` of the
data directory (0600), and a log record; ``docllm incidents`` shows the incidents they are about."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from docllm.adapters.local.files import open_private, private_dir
from docllm.ports.notifier import Notification, Notifier
from docllm.records import utcnow

log = logging.getLogger("docllm.notifications")
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "page": logging.ERROR}


class LocalNotifier(Notifier):
    """Parameters
    ----------
    path:
        The JSON-lines file notifications are appended to.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def notify(self, notification: Notification) -> dict[str, Any]:
        record = {"at": utcnow(), **notification.model_dump(mode="json")}
        data = (json.dumps(record, ensure_ascii=True, sort_keys=True) + "\n").encode("ascii")
        with self._lock:
            private_dir(self.path.parent)
            fd = open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        log.log(_LEVELS[notification.severity], "%s", notification.subject, extra={"notification": record})
        return {"channel": str(self.path), "at": record["at"]}

    def read(self) -> list[dict[str, Any]]:
        """Every notification sent so far, oldest first."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="ascii").splitlines() if line.strip()]
