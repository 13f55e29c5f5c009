"""What every CLI verb shares: finding the platform, printing JSON or tables."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from argparse import Namespace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from docllm.bootstrap import Platform, reset_platforms
from docllm.runtime.local import API_KEY_FILE, read_runtime_file
from docllm.settings import Settings, data_dir_from_env

console = Console(stderr=True)
out = Console()


def progress_bars(*, disable: bool = False) -> Progress:
    """Counted bars on stderr (stdout stays clean for ``--json``)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def data_dir(args: Namespace) -> Path:
    return data_dir_from_env(getattr(args, "data_dir", None))


def running_platform(args: Namespace) -> tuple[Platform, dict[str, Any]]:
    """The platform of the running ``docllm up`` (raises PlatformNotRunningError with the fix)."""
    d = data_dir(args)
    info = read_runtime_file(d)
    os.environ["DOCLLM_TEMPLATE"] = info["template"]
    reset_platforms()
    env = dict(os.environ)
    env.update({"DOCLLM_BACKEND": "local", "DOCLLM_DATA_DIR": str(d)})
    return Platform(Settings.from_env(env), template=Path(info["template"])), info


def api_get(info: dict[str, Any], data: Path, path: str, params: dict[str, Any]) -> tuple[int, Any]:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    req = urllib.request.Request(f"{info['api_url']}{path}?{query}")
    if info.get("auth"):
        req.add_header("Authorization", "Bearer " + (data / API_KEY_FILE).read_text(encoding="utf-8").strip())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
