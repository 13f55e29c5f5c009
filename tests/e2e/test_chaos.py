"""The chaos run (bench/chaos), trimmed for CI: part of the S3 guide through ``docllm up`` under
injected faults and three SIGKILLs, then smoke training under faults and a lost job-launch response.

The full run (all 618 files) is ``python -m bench.chaos --train``; its figures are in docs/faults.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos.run import GUIDE, run

pytestmark = [pytest.mark.slow, pytest.mark.corpus]

FILES = 150


@pytest.mark.skipif(not GUIDE.is_dir(), reason="../shared/corpus is not present")
def test_faults_and_kills_lose_nothing_and_training_still_reaches_a_model(tmp_path: Path) -> None:
    files = sorted(GUIDE.glob("*.md"))[:FILES]
    report = run(files, tmp_path, kills=3, seed=11, with_training=True, timeout=900, log=lambda _m: None)
    assert report.kills == 3
    assert report.faults_fired > 0, "no fault was injected: the run proves nothing"
    assert report.unfinished == []
    assert report.state_mismatches == [], "document states differ from the fault-free run"
    assert report.index_mismatches == [], "indexed chunk ids differ from the fault-free run"
    assert report.dead_letters == []
    assert report.second_ingest_events == 0
    assert report.train_error is None and report.model_version
