"""Code and environment identity: from the image's build arguments, else git, else "unknown"."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from docllm.provenance import LIBRARIES, code_identity, environment_identity, installed_distributions


def test_an_image_says_its_commit_in_the_environment() -> None:
    env = {"DOCLLM_GIT_COMMIT": "f" * 40, "DOCLLM_GIT_DIRTY": "false", "DOCLLM_GIT_REPOSITORY": "https://x/r.git"}
    assert code_identity(env) == {"repository": "https://x/r.git", "commit": "f" * 40, "dirty": False}


def test_credentials_in_a_repository_url_are_never_recorded() -> None:
    env = {"DOCLLM_GIT_COMMIT": "f" * 40, "DOCLLM_GIT_REPOSITORY": "https://user:ghp_secret@github.com/o/r.git"}
    assert code_identity(env)["repository"] == "https://github.com/o/r.git"


def test_without_git_the_commit_is_unknown(tmp_path: Path) -> None:
    assert code_identity({}, checkout=tmp_path) == {"repository": "unknown", "commit": "unknown", "dirty": None}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_checkout_gives_its_commit_and_whether_it_is_dirty(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("remote", "add", "origin", "https://token@example.com/o/r.git")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = git("rev-parse", "HEAD").strip()
    assert code_identity({}, checkout=tmp_path) == {
        "repository": "https://example.com/o/r.git",
        "commit": head,
        "dirty": False,
    }
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_identity({}, checkout=tmp_path)["dirty"] is True


def test_the_environment_names_its_lock_hash_and_library_versions() -> None:
    env = environment_identity({})
    assert env["image_digest"] is None
    assert len(env["lock_sha256"]) == 64
    assert set(env["libraries"]) == set(LIBRARIES)
    assert env["libraries"]["pydantic"] is not None
    assert environment_identity({"DOCLLM_IMAGE_DIGEST": "sha256:" + "a" * 64})["image_digest"] == "sha256:" + "a" * 64


def test_the_lock_lists_each_distribution_once_in_order() -> None:
    dists = installed_distributions()
    assert dists == sorted(set(dists))
    assert any(d.startswith("pydantic==") for d in dists)
