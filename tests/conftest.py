"""Fixtures every tier shares: the team's reference material and the real AWS event samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EVENTS_REAL = SHARED / "events" / "real"
CORPUS = SHARED / "corpus"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout; tests that need it skip cleanly without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared (team reference material) is not present")
    return SHARED


@pytest.fixture(scope="session")
def corpus_dir(shared_dir: Path) -> Path:
    if not (shared_dir / "corpus").is_dir():
        pytest.skip("../shared/corpus is not present")
    return shared_dir / "corpus"


@pytest.fixture(scope="session")
def real_events_dir(shared_dir: Path) -> Path:
    if not (shared_dir / "events" / "real").is_dir():
        pytest.skip("../shared/events/real is not present")
    return shared_dir / "events" / "real"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
