"""``docllm demo --quick`` end to end on a trimmed sample corpus (two of its three services), checking
its own results: cited answers, a retrain on the new documents, a rollback of the faulty version, the
manifests verified; then a re-run that resumes (every step done earlier, nothing asked again).

Minutes on one CPU (two trainings of the ``quickdemo`` family, two evaluations, engines).
"""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from docllm.cli.main import main
from docllm.demo.corpus import discover, sample_corpus, split_waves

pytestmark = pytest.mark.slow

SERVICES = ("quillstore", "beacon")


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for service in SERVICES:
        shutil.copytree(sample_corpus() / service, root / service)
    shutil.copyfile(sample_corpus() / "questions.txt", root / "questions.txt")
    return root


def _demo(data: Path, corpus: Path) -> dict[str, Any]:
    argv = ["--data-dir", str(data), "demo", "--quick", "--corpus", str(corpus), "--port", "0", "--exit", "--json"]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    assert code == 0, err.getvalue()[-4000:]
    return dict(json.loads(out.getvalue()))


@pytest.fixture(scope="module")
def demo(trimmed: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One ``docllm demo --quick`` run (minutes) that the tests below read."""
    data = tmp_path_factory.mktemp("demo") / "platform"
    return data, _demo(data, trimmed)


def _steps(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in summary["steps"]}


def test_the_quick_demo_retrains_on_the_new_pages_rolls_back_the_fault_and_verifies(
    demo: tuple[Path, dict[str, Any]], trimmed: Path
) -> None:
    _, summary = demo
    steps = _steps(summary)
    assert [s["status"] for s in summary["steps"]] == ["done"] * 8, summary["steps"]
    first, later = split_waves(discover(trimmed))
    assert steps["ingest"]["result"]["processed"] == len(first)
    v1 = steps["train"]["result"]["model_version"]
    assert steps["train"]["result"]["heldout_loss"] < steps["train"]["result"]["unigram_val_loss"]

    # The retrain happened: a new version, on a dataset with exactly the held-back pages added.
    retrain = steps["retrain"]["result"]
    v2 = retrain["model_version"]
    assert v2 != v1 and retrain["documents_added"] == len(later) > 0
    assert retrain["dataset_version"] != steps["train"]["result"]["dataset_version"]

    # The rollback happened: the faulty v2 was rolled back to v1, verified, and v1 serves again.
    fault = steps["fault"]["result"]
    assert (fault["bad_version"], fault["restored_version"], fault["serving_after"]) == (v2, v1, v1)
    assert fault["verified"] is True and fault["incident_id"] and fault["failed_requests"] > 0
    # The endpoint's 5xx alarm or the bad version's own (``...@v2``): both breach in the same tick,
    # and which one the incident lists first depends on timing.
    alarm, _, alarm_version = fault["alarm"].partition("@")
    assert alarm.endswith("serving-5xx-rate") and alarm_version in ("", v2), fault["alarm"]

    # The manifests verify (every digest recomputed, signature and chain checked), and the registry agrees.
    assert {v: m["ok"] for v, m in steps["verify"]["result"]["manifests"].items()} == {v1: True, v2: True}
    assert steps["verify"]["result"]["statuses"] == {v1: "Approved", v2: "RolledBack"}


def test_the_quick_demo_answers_with_citations_of_the_corpus(demo: tuple[Path, dict[str, Any]]) -> None:
    _, summary = demo
    steps = _steps(summary)
    answers = steps["ask"]["result"]["answers"]
    assert len(answers) == 3 and all(a["model_version"] == steps["train"]["result"]["model_version"] for a in answers)
    cited = [a for a in answers if not a["abstained"]]
    assert cited, answers
    assert all(a["citations"] for a in cited)
    assert {c.split("/")[0] for a in cited for c in a["citations"]} <= set(SERVICES)


def test_a_rerun_resumes_every_finished_step_and_requests_nothing_again(
    demo: tuple[Path, dict[str, Any]], trimmed: Path
) -> None:
    data, summary = demo
    again = _demo(data, trimmed)
    assert [s["status"] for s in again["steps"]] == ["resumed"] * 8
    assert [s["result"] for s in again["steps"]] == [s["result"] for s in summary["steps"]]
    assert _steps(again)["verify"]["result"]["statuses"] == _steps(summary)["verify"]["result"]["statuses"]


def test_a_data_directory_holding_another_corpus_demo_is_refused(trimmed: Path, tmp_path: Path) -> None:
    data = tmp_path / "platform"
    (data / "demo").mkdir(parents=True)
    (data / "demo" / "state.json").write_text(json.dumps({"corpus": "/elsewhere", "quick": True, "steps": {}}))
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        code = main(["--data-dir", str(data), "demo", "--quick", "--corpus", str(trimmed), "--exit", "--json"])
    assert code == 2 and "another --data-dir" in json.loads(out.getvalue())["error"]
