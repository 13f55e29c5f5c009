"""Which code and which environment a process runs: recorded by jobs, read by the manifest.

Jobs put both in their ``result.json`` as ``provenance: {code, environment}``; the compliance
manifest copies them from there (never recomputes them later, when the code may have moved on).

* :func:`code_identity` — the git commit, whether the tree had uncommitted changes, and the
  repository. Images get them at build time as ``DOCLLM_GIT_COMMIT``, ``DOCLLM_GIT_DIRTY`` and
  ``DOCLLM_GIT_REPOSITORY`` (a container holds no ``.git``); otherwise ``git`` is asked in the
  source checkout the package runs from; otherwise ``"unknown"``.
* :func:`environment_identity` — the image digest (``DOCLLM_IMAGE_DIGEST``, set by the job
  runner) or, locally, a hash of every installed distribution and its version (a lock of the
  environment as it is, not as a lock file says it should be), the Python version and the
  versions of the libraries that shape a model.

>>> sorted(code_identity())
['commit', 'dirty', 'repository']
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

UNKNOWN = "unknown"
#: Libraries whose versions change what a model is (numerics, tokenization, serialization, config).
LIBRARIES = ("torch", "transformers", "tokenizers", "sentencepiece", "safetensors", "numpy", "pydantic", "docllm")
_GIT_TIMEOUT_S = 10


def _checkout() -> Path:
    # shared/docllm/provenance.py -> the repository root (as bootstrap.find_template assumes).
    return Path(__file__).resolve().parents[2]


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _without_credentials(url: str) -> str:
    """A remote URL without a user or token in it (``https://user:token@host/…``)."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url, flags=re.IGNORECASE)


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes")


def code_identity(environ: dict[str, str] | None = None, *, checkout: Path | None = None) -> dict[str, Any]:
    """``{"repository", "commit", "dirty"}`` of the running code.

    ``dirty`` is True when the checkout had changes not committed (tracked files changed, or
    files git does not ignore added), None when unknown.
    """
    env = os.environ if environ is None else environ
    repository = _without_credentials(env.get("DOCLLM_GIT_REPOSITORY", ""))
    if env.get("DOCLLM_GIT_COMMIT"):
        dirty = env.get("DOCLLM_GIT_DIRTY")
        return {
            "repository": repository or UNKNOWN,
            "commit": env["DOCLLM_GIT_COMMIT"],
            "dirty": None if dirty is None else _flag(dirty),
        }
    root = checkout or _checkout()
    commit = _git(root, "rev-parse", "HEAD") if (root / ".git").exists() else None
    if not commit:
        return {"repository": repository or UNKNOWN, "commit": UNKNOWN, "dirty": None}
    status = _git(root, "status", "--porcelain")
    remote = _git(root, "config", "--get", "remote.origin.url")
    return {
        "repository": repository or (_without_credentials(remote) if remote else UNKNOWN),
        "commit": commit,
        "dirty": None if status is None else bool(status),
    }


def installed_distributions() -> list[str]:
    """``name==version`` of every installed distribution, names normalised, sorted, unique."""
    seen = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            seen.add(f"{re.sub(r'[-_.]+', '-', name).lower()}=={dist.version}")
    return sorted(seen)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment_identity(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``{"image_digest", "lock_sha256", "python", "libraries"}`` of the running process."""
    env = os.environ if environ is None else environ
    lock = "\n".join(installed_distributions()).encode("utf-8")
    return {
        "image_digest": env.get("DOCLLM_IMAGE_DIGEST") or None,
        "lock_sha256": hashlib.sha256(lock).hexdigest(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
    }


def provenance() -> dict[str, Any]:
    """``{"code": …, "environment": …}``: what a job writes into its ``result.json``."""
    return {"code": code_identity(), "environment": environment_identity()}
