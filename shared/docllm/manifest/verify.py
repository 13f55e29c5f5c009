"""Verification results, and the pure checks verification is made of.

``docllm.service_layer.manifest.verify`` reads the stores and recomputes digests; what it
compares and how it names a difference lives here and in :mod:`docllm.manifest.chain`, so
the rules can be read (and tested) without a platform.
"""

from __future__ import annotations

from docllm.manifest.chain import RecordedEntry, StoredEntry, check_chain
from docllm.manifest.report import Mismatch, MismatchKind, VerificationReport
from docllm.manifest.statement import shape_problems

__all__ = [
    "Mismatch",
    "MismatchKind",
    "RecordedEntry",
    "StoredEntry",
    "VerificationReport",
    "check_chain",
    "shape_problems",
]
