"""Deterministic resource names, so a redelivered deployment finds what the first attempt made.

SageMaker names match ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``; Bedrock's imported
model names ``([0-9a-zA-Z][_-]?)+``. Both allow 63 characters. Names are
``docllm-<stage>-<family>-<digest>``: the stage and family keep them readable
and inside the IAM prefix ``docllm-<stage>-*``; the digest of (family, version)
keeps versions apart whatever characters a version string holds.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
DIGEST_CHARS = 10
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """Lowercase ``text`` with every run of other characters turned into one hyphen.

    Examples
    --------
    >>> slug("Tiny_S3 / v2")
    'tiny-s3-v2'
    """
    return _NOT_ALNUM.sub("-", text.lower()).strip("-") or "x"


def version_digest(family: str, version: str) -> str:
    """A short, stable digest of one (family, version) pair.

    Examples
    --------
    >>> version_digest("tiny", "v1") == version_digest("tiny", "v1") != version_digest("tiny", "v2")
    True
    """
    return hashlib.sha256(f"{family}\x00{version}".encode()).hexdigest()[:DIGEST_CHARS]


def _fit(stage: str, family: str, suffix: str = "") -> str:
    """``docllm-<stage>-<family>[-<suffix>]`` within 63 characters, trimming the family first."""
    fixed = ["docllm", stage] + ([suffix] if suffix else [])
    room = MAX_NAME - len("-".join(fixed)) - 1
    family = family[: max(1, room)].strip("-") or "x"
    parts = ["docllm", stage, family] + ([suffix] if suffix else [])
    return "-".join(parts)[:MAX_NAME].rstrip("-")


def endpoint_name(stage: str, family: str) -> str:
    """The family's SageMaker endpoint: one per (stage, family), updated in place across versions.

    Examples
    --------
    >>> endpoint_name("dev", "tiny")
    'docllm-dev-tiny'
    """
    return _fit(slug(stage), slug(family))


def versioned_name(stage: str, family: str, version: str) -> str:
    """Name of everything made per version: SageMaker model and endpoint config, Bedrock job and model.

    Examples
    --------
    >>> name = versioned_name("dev", "tiny", "v7")
    >>> name.startswith("docllm-dev-tiny-"), len(name) <= 63
    (True, True)
    """
    return _fit(slug(stage), slug(family), version_digest(family, version))
