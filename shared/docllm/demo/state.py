"""What the demo has finished, in ``<data dir>/demo/state.json``: a re-run skips those steps.

A step that makes a long request records the request's id *before* it waits (``begin``), so a
re-run after Ctrl-C waits for that same request (the platform carried on with it after its restart)
instead of asking again. The file is replaced whole (written aside, then renamed over).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


class DemoState:
    def __init__(self, folder: Path, *, corpus: str, quick: bool) -> None:
        self.path = folder / STATE_FILE
        self.data: dict[str, Any] = {"corpus": corpus, "quick": quick, "steps": {}}
        if self.path.exists():
            self.data = json.loads(self.path.read_text(encoding="utf-8"))

    @property
    def corpus(self) -> str:
        return str(self.data["corpus"])

    @property
    def quick(self) -> bool:
        return bool(self.data["quick"])

    def step(self, name: str) -> dict[str, Any]:
        return dict(self.data["steps"].get(name, {}))

    def done(self, name: str) -> bool:
        return self.step(name).get("status") == "done"

    def begin(self, name: str, **fields: Any) -> None:
        """Records what a step started (a request id) before it waits for the outcome."""
        self.data["steps"][name] = {**self.step(name), **fields, "status": "started"}
        self.save()

    def finish(self, name: str, *, seconds: float, summary: str, result: dict[str, Any]) -> None:
        self.data["steps"][name] = {
            **self.step(name),
            "status": "done",
            "seconds": round(seconds, 1),
            "summary": summary,
            "result": result,
        }
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)
