"""Helpers shared by the ingestion unit tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ingest"
# pdf_factory is a plain helper module beside the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture()
def fixture_bytes() -> callable[[str], bytes]:  # type: ignore[valid-type]
    def read(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()

    return read
