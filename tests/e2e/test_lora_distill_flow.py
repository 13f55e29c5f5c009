"""LoRA and distillation through the local platform, by events only (issue 17, acceptance (b), (c)).

(b) A small base model the test builds (a docllm Llama export with its own SentencePiece tokenizer,
``tests/integration/lora/base.py``) is the approved champion of the family ``e2e-base``; the LoRA
family ``e2e-lora`` adapts it: "Training Requested" → dataset → (no tokenizer, no shards) → the LoRA
job → "Model Trained" → evaluation → gate → a decision with a manifest naming the base, the adapter
and the subset. The merged export loads with ``transformers``; the adapter loads in vLLM's CPU build
(skipped, saying why, where the tool environment is absent).

(c) The teacher family ``smoke`` trains through the platform and is approved; the student
``e2e-student`` (half the width, the teacher's tokenizer) trains from it with the distillation loss,
passes the gate, and its manifest names the teacher's version and manifest digest.

Families and gates come from files of the test's (``$DOCLLM_FAMILIES_FILE``, ``$DOCLLM_GATES_FILE``):
the base's weights are random, so the LoRA gate's held-out threshold is loose; what is tested is
the path, the records and the artefacts, not the quality of a model trained for seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docllm.bootstrap import Platform
from docllm.dataset.versions import assign_split
from docllm.events.contracts import TrainingRequested, to_bus
from docllm.manifest.statement import KIND_ADAPTER, KIND_BASE_MODEL, KIND_TEACHER
from docllm.ports.objects import split_uri
from docllm.runtime.local import LocalRuntime
from docllm.service_layer import manifest as manifests
from docllm.service_layer.jobs import MODELS_PK
from tests.conftest import REPO
from tests.integration.lora.base import build_base, document

pytestmark = pytest.mark.slow
DECIDED = ("Model Approved", "Model Rejected")

FAMILIES = """
version: 1
families:
  smoke:
    description: the teacher (the packaged smoke family's settings)
    preset: tiny
    block_size: 64
    budget: {tokens: 12000, minutes: 1}
    retrain: {on_change: false}
    deploy: []
    tokenizer: {vocab_size: 512}
    train: {micro_batch_size: 4, learning_rate: 0.003, warmup_steps: 5, eval_interval: 10, eval_batches: 2,
            checkpoint_interval: 20, precision: fp32}
  e2e-student:
    description: half-width student of smoke's champion
    method: distill
    preset: tiny
    block_size: 64
    model: {n_embd: 128, n_head: 2}
    budget: {tokens: 12000, minutes: 1}
    distill: {teacher_family: smoke, temperature: 2.0, alpha: 0.5}
    retrain: {on_change: false}
    deploy: []
    train: {micro_batch_size: 4, learning_rate: 0.003, warmup_steps: 5, eval_interval: 10, eval_batches: 2,
            checkpoint_interval: 20, precision: fp32}
  e2e-base:
    description: the LoRA base (built by the test, never trained here)
    preset: tiny
    budget: {minutes: 1}
    retrain: {on_change: false}
    deploy: []
  e2e-lora:
    description: LoRA adapter on e2e-base's champion
    method: lora
    preset: tiny
    budget: {minutes: 5}
    lora:
      base_family: e2e-base
      config: {r: 8, alpha: 16, dropout: 0.0, learning_rate: 0.01, max_steps: 12, micro_batch_size: 4,
               max_length: 256, validation_share: 0.25, eval_interval: 6, log_interval: 3, device: cpu,
               answer_tuning: {distractors: 0}, subset: {share: 0.75, informative_terms: 50, rare_terms: 50}}
    retrain: {on_change: false}
    deploy: []
"""

GATES = """
defaults:
  rules:
    - {metric: heldout_loss, threshold_metric: unigram_val_loss, max_regression_rel: 0.02}
families:
  smoke:
    inherit_defaults: false
    rules: [{metric: heldout_loss, threshold: 6.3, max_regression_rel: 0.05}]
  e2e-student:
    inherit_defaults: false
    rules: [{metric: heldout_loss, threshold: 6.5}]
  e2e-lora:
    inherit_defaults: false
    rules: [{metric: heldout_loss, threshold: 100}]
"""


def _p(rt: LocalRuntime) -> Platform:
    assert rt.platform is not None
    return rt.platform


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    root = tmp_path_factory.mktemp("lora-distill")
    (root / "families.yaml").write_text(FAMILIES)
    (root / "gates.yaml").write_text(GATES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCLLM_FAMILIES_FILE", str(root / "families.yaml"))
        mp.setenv("DOCLLM_GATES_FILE", str(root / "gates.yaml"))
        rt = LocalRuntime(root / "platform", template=REPO / "template.yaml", port=0, auth=False)
        rt.start()
        try:
            _ingest(rt, root / "docs")
            yield rt
        finally:
            rt.stop()


def _ingest(rt: LocalRuntime, folder: Path) -> None:
    """Pages whose sentences the answer-tuning rules turn into examples, some in each split."""
    from docllm.cli.main import main

    folder.mkdir()
    names = [f"widget{i}" for i in range(300)]
    chosen = (
        [n for n in names if assign_split(f"s3/{n}.md") == "test"][:3]
        + [n for n in names if assign_split(f"s3/{n}.md") == "validation"][:2]
        + [n for n in names if assign_split(f"s3/{n}.md") == "train"][:16]
    )
    for n in chosen:
        i = int(n.removeprefix("widget"))
        (folder / f"{n}.md").write_text(document(i) + "\n\n" + document(i + 1))
    assert main(["--data-dir", str(rt.data_dir), "ingest", str(folder), "--service", "s3", "--json"]) == 0


def _request(rt: LocalRuntime, family: str, request_id: str) -> dict[str, Any]:
    _p(rt).bus.publish([to_bus(TrainingRequested(family=family, request_id=request_id))])
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        for e in _p(rt).event_log.since(0):
            detail = e.body.get("detail") or {}
            if detail.get("request_id") == request_id and e.detail_type in (*DECIDED, "Stage Failed"):
                assert e.detail_type != "Stage Failed", detail
                return dict(detail, decision=e.detail_type)
        time.sleep(0.5)
    raise AssertionError(f"no decision for {request_id}")


def _download(rt: LocalRuntime, uri: str, dest: Path) -> Path:
    p = _p(rt)
    bucket, prefix = split_uri(uri)
    for info in p.objects.list(bucket, prefix):
        path = dest / info.key[len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(p.objects.get(bucket, info.key))
    return dest


@pytest.fixture(scope="module")
def lora(runtime: LocalRuntime, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from bench.rollback.run import register_approved

    p = _p(runtime)
    base = build_base(tmp_path_factory.mktemp("e2e-base"))
    register_approved(p, base, ["e2e-base-v1"], family="e2e-base")
    p.registry.promote("e2e-base", "e2e-base-v1")
    return _request(runtime, "e2e-lora", "req-lora")


def test_lora_on_a_self_built_base_goes_through_evaluation_and_the_gate(
    runtime: LocalRuntime, lora: dict[str, Any]
) -> None:
    p = _p(runtime)
    assert lora["decision"] == "Model Approved", lora
    version = lora["model_version"]
    model = p.state.get(MODELS_PK, version)
    assert model is not None and model["method"] == "lora" and model["base_model_version"] == "e2e-base-v1"
    assert model["export_uri"].endswith("/hf/") and model["adapter_uri"].endswith("/adapter/")
    assert (model["r"], model["alpha"]) == (8, 16) and model["subset"]
    events = [
        e.detail_type for e in p.event_log.since(0) if (e.body.get("detail") or {}).get("request_id") == "req-lora"
    ]
    assert "Tokenizer Trained" not in events and "Shards Built" not in events  # the base's tokenizer, no shards
    assert events.index("Model Trained") < events.index("Evaluation Completed") < events.index("Model Approved")
    statement = manifests.show(p, version)
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert any(d["annotations"]["kind"] == KIND_BASE_MODEL for d in deps)
    byproducts = statement["predicate"]["runDetails"]["byproducts"]
    assert any((b.get("annotations") or {}).get("kind") == KIND_ADAPTER for b in byproducts)
    report = manifests.verify(p, version)
    assert report.ok, report.mismatches


def test_the_merged_export_loads_with_transformers(runtime: LocalRuntime, lora: dict[str, Any], tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = _p(runtime).state.get(MODELS_PK, lora["model_version"])
    assert model is not None
    merged = AutoModelForCausalLM.from_pretrained(_download(runtime, model["export_uri"], tmp_path / "hf"))
    with torch.no_grad():
        logits = merged(torch.tensor([[1, 5, 9]])).logits
    assert logits.shape[:2] == (1, 3) and torch.isfinite(logits).all()


def test_the_adapter_loads_in_vllm_cpu(runtime: LocalRuntime, lora: dict[str, Any], tmp_path: Path) -> None:
    from tests.support.vllm import get_json, skip_without_vllm, vllm_server

    skip_without_vllm()
    model = _p(runtime).state.get(MODELS_PK, lora["model_version"])
    assert model is not None
    base = _download(runtime, model["base_model_uri"], tmp_path / "base")
    adapter = _download(runtime, model["adapter_uri"], tmp_path / "adapter")
    args = ["--enable-lora", "--max-lora-rank", "8", "--max-loras", "1", "--lora-modules", f"tuned={adapter}"]
    with vllm_server(base, "base", tmp_path / "vllm.log", *args) as url:
        assert {m["id"] for m in get_json(url + "/v1/models")["data"]} == {"base", "tuned"}


def test_a_distilled_student_passes_the_gate_with_its_teacher_in_the_manifest(runtime: LocalRuntime) -> None:
    p = _p(runtime)
    teacher = _request(runtime, "smoke", "req-teacher")
    assert teacher["decision"] == "Model Approved" and teacher["champion"] == teacher["model_version"], teacher
    student = _request(runtime, "e2e-student", "req-student")
    assert student["decision"] == "Model Approved", student
    model = p.state.get(MODELS_PK, student["model_version"])
    assert model is not None and model["method"] == "distill"
    teacher_model = p.state.get(MODELS_PK, teacher["model_version"])
    assert teacher_model is not None and model["tokenizer_version"] == teacher_model["tokenizer_version"]
    deps = manifests.show(p, student["model_version"])["predicate"]["buildDefinition"]["resolvedDependencies"]
    (taught,) = [d for d in deps if d["annotations"]["kind"] == KIND_TEACHER]
    assert taught["annotations"]["modelVersion"] == teacher["model_version"]
    assert taught["annotations"]["manifestSha256"] == teacher["manifest_sha256"]
    assert manifests.verify(p, student["model_version"]).ok
    print(json.dumps({"teacher": teacher["model_version"], "student": student["model_version"]}))
