"""Compliance store port: write-once storage of signed manifests.

S3 with Object Lock (compliance mode) on AWS, an append-only directory locally. Write-once is
the port's contract, not a convention: :meth:`ComplianceStore.put_once` never replaces what a
key holds, it raises :class:`~docllm.exceptions.ConflictError`, and the caller reads the key
back to decide whether what is there is its own earlier write (a redelivery) or another's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class ComplianceStore(ABC):
    """Keys written once, read forever."""

    @abstractmethod
    def put_once(self, key: str, body: bytes) -> str:
        """Store ``body`` under ``key`` if nothing is there; return its URI.

        Raises :class:`~docllm.exceptions.ConflictError` when ``key`` already holds something
        (whatever it holds: the same bytes too), and writes nothing then.
        """

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`~docllm.exceptions.NotFoundError` when absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, in key order."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where ``key`` lives (``s3://bucket/key``, ``file:///…``), whether or not it exists."""
