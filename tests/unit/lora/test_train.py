"""The LoRA loop's parts on a tiny Llama made here: labels on completions only, the loss, the
schedule, the target layers, and a short run whose completion loss drops."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
import torch

from docllm.lora.config import LoraConfig
from docllm.lora.exceptions import BaseModelError, LoraDataError, LoraError
from docllm.lora.train import (
    IGNORE,
    LoraInterrupted,
    collate,
    completion_loss,
    encode_pair,
    learning_rate,
    load_base_model,
    mean_completion_loss,
    non_embedding_params,
    resolve_target_modules,
    total_steps,
    train_lora,
)

WORDS = ["###", "Question:", "Answer:", "what", "is", "a", "bucket", "container", "for", "objects", "s3"]


@pytest.fixture(scope="module")
def tokenizer() -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_llama(seed: int = 0) -> torch.nn.Module:
    """A one-layer Llama. Its (tied, frozen) embeddings are drawn ten times wider than transformers'
    default: at std 0.02 the logits of a 32-wide model cannot leave ±0.7, whatever the adapter does."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=True, initializer_range=0.2)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


PROMPT = "### Question: what is a bucket ### Answer:"
COMPLETION = " a container for objects"


def test_labels_cover_the_completion_and_eos_only(tokenizer: object) -> None:
    enc = encode_pair(tokenizer, PROMPT, COMPLETION)  # type: ignore[arg-type]
    assert enc.prompt_tokens == 8 and enc.completion_tokens == 5  # four words and EOS
    assert enc.input_ids[-1] == 2
    short = encode_pair(tokenizer, "### Answer:", " s3")  # type: ignore[arg-type]
    batch = collate([enc, short], pad_id=0)
    assert batch["input_ids"].shape == (2, 13)
    labels = batch["labels"]
    assert (labels[0, :8] == IGNORE).all() and (labels[0, 8:] == batch["input_ids"][0, 8:]).all()
    assert (labels[1, :2] == IGNORE).all() and labels[1, 2:4].tolist() == [14, 2]
    assert (labels[1, 4:] == IGNORE).all() and batch["attention_mask"][1].tolist() == [1] * 4 + [0] * 9


def test_the_loss_is_the_cross_entropy_of_the_completion_tokens(tokenizer: object) -> None:
    model = tiny_llama()
    enc = encode_pair(tokenizer, PROMPT, COMPLETION)  # type: ignore[arg-type]
    batch = collate([enc], pad_id=0)
    with torch.no_grad():
        loss, n = completion_loss(model, batch)
        logits = model(input_ids=batch["input_ids"]).logits[0]
    logp = torch.log_softmax(logits, -1)
    ids = enc.input_ids
    expected = -sum(logp[t - 1, ids[t]] for t in range(enc.prompt_tokens, len(ids)))
    assert n == 5 and loss.item() == pytest.approx(float(expected), rel=1e-5)
    padded = collate([enc, encode_pair(tokenizer, "### Answer:", " s3")], pad_id=0)  # type: ignore[arg-type]
    with torch.no_grad():
        both, m = completion_loss(model, padded)
    assert m == 7 and both.item() > loss.item()  # padding adds nothing, the other pair adds its 2 tokens


def test_the_schedule_warms_up_then_decays_to_zero() -> None:
    cfg = LoraConfig(base_model_uri="s3://art/m/hf/", learning_rate=1e-3, warmup_steps=4)
    rates = [learning_rate(cfg, s, 20) for s in range(20)]
    assert rates[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3]) and rates[4] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(rates[4:])) and rates[-1] < 1e-4
    assert total_steps(cfg.model_copy(update={"epochs": 3, "micro_batch_size": 4}), 10) == 9
    assert total_steps(cfg.model_copy(update={"max_steps": 5}), 10_000) == 5


def test_all_linear_is_every_linear_layer_but_the_head_by_name() -> None:
    model = tiny_llama()
    assert resolve_target_modules(model, "all-linear") == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj",
    ]  # fmt: skip
    assert resolve_target_modules(model, ("q_proj", "v_proj")) == ["q_proj", "v_proj"]
    with pytest.raises(LoraError, match="no layer named"):
        resolve_target_modules(model, ("c_attn",))
    assert non_embedding_params(model) == sum(p.numel() for p in model.parameters()) - 16 * 32


def test_a_short_run_lowers_the_completion_loss_and_trains_only_the_adapter(tokenizer: object) -> None:
    model = tiny_llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = LoraConfig(base_model_uri="s3://art/m/hf/", r=4, alpha=8, dropout=0.0, learning_rate=0.05,
                     max_steps=15, micro_batch_size=2, max_length=32, eval_interval=5, log_interval=5)  # fmt: skip
    pairs = [(PROMPT, COMPLETION), ("### Question: what is s3 ### Answer:", " a container for objects")]
    peft_model, outcome = train_lora(model, tokenizer, cfg, pairs, pairs[:1])  # type: ignore[arg-type]
    assert outcome.steps == 15 and outcome.initial_val_loss is not None and outcome.final_val_loss is not None
    assert outcome.final_val_loss < outcome.initial_val_loss / 2
    assert [(h.step, h.kind) for h in outcome.history] == [
        (0, "val"), (5, "train"), (5, "val"), (10, "train"), (10, "val"), (15, "train"), (15, "val"),
    ]  # fmt: skip
    assert outcome.trainable_params == sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    for name, p in peft_model.get_base_model().named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, before[name.replace(".base_layer", "")]), name
    enc = [encode_pair(tokenizer, *pairs[0])]  # type: ignore[arg-type]
    loss = mean_completion_loss(peft_model, enc, batch_size=1, pad_id=0, device="cpu")
    assert loss == pytest.approx(outcome.final_val_loss)


def test_a_stop_request_ends_the_run_before_the_next_step(tokenizer: object) -> None:
    stop = threading.Event()
    stop.set()  # what the job's SIGTERM handler does
    cfg = LoraConfig(base_model_uri="s3://art/m/hf/", max_steps=5, max_length=32)
    with pytest.raises(LoraInterrupted, match="stopped at step 0 of 5"):
        train_lora(tiny_llama(), tokenizer, cfg, [(PROMPT, COMPLETION)], stop=stop)  # type: ignore[arg-type]


def test_nothing_to_train_on_is_an_error(tokenizer: object) -> None:
    cfg = LoraConfig(base_model_uri="s3://art/m/hf/", max_length=32)
    with pytest.raises(LoraDataError, match="max_length=32"):
        train_lora(tiny_llama(), tokenizer, cfg, [(PROMPT * 5, COMPLETION)])  # type: ignore[arg-type]


def test_the_base_is_read_from_a_directory_only(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="not a Hugging Face model directory"):
        load_base_model(tmp_path / "meta-llama" / "Llama-3.1-8B")
    tiny_llama().save_pretrained(str(tmp_path / "base"))
    assert type(load_base_model(tmp_path / "base")).__name__ == "LlamaForCausalLM"
