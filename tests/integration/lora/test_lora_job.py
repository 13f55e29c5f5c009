"""The LoRA job under the SageMaker contract, on a base model and dataset built here (issue 17, Deliver 3).

The run (``conftest.lora_run``) trains 24 steps on the answer-tuning pairs of six of eight small
documents (a TF-IDF subset of 75%), then writes the adapter and the merged export. These tests read
what it left behind as the next stages and the engines would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from docllm.dataset.versions import read_split_file
from docllm.jobs.contract import JobEnvironment, JobInputError
from docllm.lora.data import read_jsonl
from docllm.lora.subset import SubsetResult
from docllm.lora.train import BaseModelError, load_base_model
from docllm.serving.chat import ANSWER_MARKER, CONTEXT_MARKER
from docllm.training.result import TrainingJobResult
from tests.integration.lora.conftest import BASE_URI, LORA, OUTPUT_URI, LoraRun, layout

MAX_NEW_TOKENS = 12


def _base(run: LoraRun) -> torch.nn.Module:
    return load_base_model(run.base).eval()


def _peft(run: LoraRun) -> torch.nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(_base(run), str(run.model_dir / "adapter")).eval()


def _merged(run: LoraRun) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(run.model_dir / "hf"), local_files_only=True).eval()


@torch.no_grad()
def _greedy(model: torch.nn.Module, ids: list[int]) -> list[int]:
    seq = list(ids)
    for _ in range(MAX_NEW_TOKENS):
        seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids) :]


def _prompt_ids(run: LoraRun, n: int = 3) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(run.model_dir / "hf"), local_files_only=True)
    pairs = read_jsonl(run.model_dir / "data" / "validation.jsonl")[:n]
    return [list(tok(p["prompt"])["input_ids"]) for p in pairs]


def test_the_completion_loss_drops(lora_run: LoraRun) -> None:
    r = lora_run.result
    assert r.steps == LORA["max_steps"] and r.method == "lora"
    assert r.initial_val_loss is not None and r.final_val_loss is not None
    # Held-out documents: the adapter learnt the answer format, not only the training answers.
    assert r.final_val_loss < 0.5 * r.initial_val_loss
    history = [json.loads(line) for line in (lora_run.model_dir / "history.jsonl").read_text().splitlines()]
    train = [h["loss"] for h in history if h["kind"] == "train"]
    assert len(train) == LORA["max_steps"] // LORA["log_interval"] and train[-1] < train[0]
    assert history[0] == {**history[0], "step": 0, "kind": "val", "loss": r.initial_val_loss}
    assert 0 < r.completion_tokens_seen < r.tokens_seen  # the prompts are seen, not scored


def test_the_adapter_is_written_and_reloads_with_peft(lora_run: LoraRun) -> None:
    adapter = lora_run.model_dir / "adapter"
    assert {p.name for p in adapter.iterdir()} >= {"adapter_model.safetensors", "adapter_config.json"}
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE_URI  # the object store, never a local path or hub id
    assert config["r"] == 8 and config["lora_alpha"] == 16
    assert sorted(config["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    model = _peft(lora_run)
    b_norms = [p.norm().item() for n, p in model.named_parameters() if "lora_B" in n]
    assert b_norms and min(b_norms) > 0  # trained: B starts at zero
    assert lora_run.result.trainable_params == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)


def test_the_merged_export_loads_in_transformers_and_decodes_as_base_plus_adapter(lora_run: LoraRun) -> None:
    peft_model, merged, base = _peft(lora_run), _merged(lora_run), _base(lora_run)
    assert type(merged).__name__ == "LlamaForCausalLM"
    changed = 0
    for ids in _prompt_ids(lora_run):
        with torch.no_grad():
            a = peft_model(input_ids=torch.tensor([ids])).logits
            b = merged(input_ids=torch.tensor([ids])).logits
        assert (a - b).abs().max().item() < 1e-3
        ours = _greedy(merged, ids)
        assert ours == _greedy(peft_model, ids)
        changed += ours != _greedy(base, ids)
    assert changed  # the adapter changed what the model says


def test_the_evaluation_loads_the_merged_export(lora_run: LoraRun) -> None:
    """The evaluation job reads ``hf/`` with our loader: the merged weights, through docllm_model.json."""
    from docllm.evaluation.model_metrics import LanguageModel

    lm = LanguageModel.load(lora_run.model_dir / "hf")
    merged = _merged(lora_run)
    ids = _prompt_ids(lora_run, 1)[0]
    with torch.no_grad():
        ours, _ = lm.model(torch.tensor([ids]))
        theirs = merged(input_ids=torch.tensor([ids])).logits
    assert ours is not None and (ours - theirs).abs().max().item() < 1e-4
    for name in ("tokenizer.json", "tokenizer.model", "generation_config.json"):
        assert (lora_run.model_dir / "hf" / name).read_bytes() == (lora_run.base / name).read_bytes(), name


def test_the_result_is_a_training_result_the_train_stage_completes(lora_run: LoraRun) -> None:
    raw = json.loads((lora_run.model_dir / "result.json").read_text())
    trained = TrainingJobResult.model_validate(raw)  # what service_layer.train.complete_job reads
    assert trained.export_path == "hf" and trained.model_version == "lora-1"
    assert trained.unigram_val_loss is not None  # the gate's heldout_loss threshold
    assert trained.hf_architecture == "LlamaForCausalLM" and trained.variant == "llama"
    r = lora_run.result
    assert r.base_model.uri == BASE_URI and r.base_model.version == "v1"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(r.base_model.files)
    assert r.train_config["base_model_uri"] == BASE_URI
    assert lora_run.published == [(lora_run.model_dir, OUTPUT_URI)]


def test_the_data_and_the_subset_are_recorded(lora_run: LoraRun) -> None:
    r = lora_run.result
    subset = SubsetResult.model_validate_json((lora_run.model_dir / "subset.json").read_text())
    train_ids = {rec.chunk_id for rec in read_split_file(lora_run.dataset / "train.jsonl")}
    assert subset.sections_total == len(train_ids) == 8 and subset.sections_kept == 6
    assert subset.kept_ids() <= train_ids
    assert r.subset == subset.summary() and r.subset_path == "subset.json"
    kept_docs = {k.doc_key for k in subset.kept}
    for split, count in (("train", r.data.train_examples), ("validation", r.data.validation_examples)):
        pairs = read_jsonl(lora_run.model_dir / "data" / f"{split}.jsonl")
        assert len(pairs) == count > 0
        for p in pairs:
            assert p["prompt"].startswith(CONTEXT_MARKER) and p["prompt"].endswith(ANSWER_MARKER + "\n")
            assert p["completion"] in p["prompt"]  # a verbatim span of its context
            assert any(f"[1] Amazon S3 User Guide > Configuring {d.split('/')[1][:-3]} " in p["prompt"]
                       for d in kept_docs)  # fmt: skip
    assert r.data.train_documents + r.data.validation_documents == len(kept_docs)


def test_a_hub_id_is_refused_as_a_base_model(tmp_path: Path, tiny_base: Path) -> None:
    from docllm.jobs.lora_job import main

    bad = {**LORA, "base_model_uri": "meta-llama/Llama-3.1-8B"}
    env = JobEnvironment.from_env(layout(tmp_path, tiny_base, {"lora_config": json.dumps(bad)}))
    with pytest.raises(JobInputError, match=r"lora_config\.base_model_uri"):
        main(env)
    with pytest.raises(BaseModelError, match="not a Hugging Face model directory"):
        load_base_model(Path("meta-llama/Llama-3.1-8B"))


def test_missing_settings_and_channels_are_input_errors(tmp_path: Path, tiny_base: Path) -> None:
    from docllm.jobs.lora_job import main

    env = JobEnvironment.from_env(layout(tmp_path, tiny_base, {}))
    with pytest.raises(JobInputError, match="lora_config"):
        main(env)
    hps = {"lora_config": json.dumps(LORA)}
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hps))
    env = JobEnvironment.from_env({"DOCLLM_SM_PREFIX": str(tmp_path), "SM_CHANNELS": '["dataset"]'})
    with pytest.raises(JobInputError, match="channel 'base_model' is missing"):
        main(env)
