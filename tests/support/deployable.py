"""Model versions the deploy stage accepts, without training: a tiny random-weight export in the
artifact bucket, a training record, and an Approved registry package, per version
(:func:`bench.rollback.run.register_approved`, which the rollback benchmark uses the same way)."""

from __future__ import annotations

from pathlib import Path

from bench.rollback.run import register_approved
from docllm.bootstrap import Platform

FAMILY = "tiny-s3"


def seed_deployable(p: Platform, export: Path, *versions: str, family: str = FAMILY) -> None:
    """Each of ``versions`` deployable on ``p``: ``export``'s files as its Hugging Face export, a training
    record naming it, and an Approved package in the registry."""
    register_approved(p, export, list(versions), family=family)
