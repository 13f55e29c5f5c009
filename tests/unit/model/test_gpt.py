from __future__ import annotations

import math

import pytest
import torch

from docllm.model.config import ModelConfig, Variant
from docllm.model.gpt import GPT, KVCache
from docllm.model.sampling import generate

VARIANTS: list[Variant] = ["gelu-learned", "gelu-rotary", "llama"]


def small(variant: Variant, **kw: object) -> ModelConfig:
    base: dict[str, object] = {"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 24, "vocab_size": 128}
    return ModelConfig(variant=variant, **{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", VARIANTS)
def test_initial_loss_is_close_to_uniform_guessing(variant: Variant) -> None:
    torch.manual_seed(0)
    model = GPT(small(variant))
    x, y = torch.randint(0, 128, (4, 24)), torch.randint(0, 128, (4, 24))
    _, loss = model(x, y)
    assert loss is not None
    assert abs(loss.item() - math.log(128)) < 0.3


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_head_is_tied_to_the_embedding(variant: Variant) -> None:
    model = GPT(small(variant))
    assert model.lm_head.weight.data_ptr() == model.transformer["wte"].weight.data_ptr()


@pytest.mark.parametrize("variant", VARIANTS)
def test_future_tokens_do_not_change_earlier_logits(variant: Variant) -> None:
    torch.manual_seed(0)
    model = GPT(small(variant)).eval()
    x = torch.randint(0, 128, (1, 20))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 128
    a, _ = model(x)
    b, _ = model(y)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("variant", VARIANTS)
def test_kv_cache_decoding_matches_a_full_forward(variant: Variant) -> None:
    torch.manual_seed(0)
    cfg = small(variant)
    model = GPT(cfg).eval()
    x = torch.randint(0, 128, (2, 16))
    full, _ = model(x)
    cache = KVCache(cfg, 2, device=torch.device("cpu"), dtype=torch.float32)
    prefill, _ = model(x[:, :9], cache=cache)
    chunk, _ = model(x[:, 9:12], cache=cache)  # a multi-token chunk after a prefix
    steps = [model(x[:, i : i + 1], cache=cache)[0] for i in range(12, 16)]
    incremental = torch.cat([prefill, chunk, *steps], dim=1)
    torch.testing.assert_close(incremental, full, atol=1e-5, rtol=1e-5)


def test_sequences_longer_than_the_context_are_rejected() -> None:
    model = GPT(small("llama"))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 25, dtype=torch.long))


def test_greedy_generation_with_cache_equals_without() -> None:
    torch.manual_seed(0)
    model = GPT(small("gelu-rotary")).eval()
    prompt = torch.randint(0, 128, (1, 5))
    cached = model.generate(prompt, 10, temperature=0.0)  # fits: uses the KV cache
    long = model.generate(prompt, 30, temperature=0.0)  # exceeds block_size: sliding window
    assert cached.shape == (1, 15)
    assert long.shape == (1, 35)
    assert torch.equal(long[:, :15], cached)


def test_seeded_sampling_is_reproducible_and_respects_top_k() -> None:
    torch.manual_seed(0)
    model = GPT(small("llama")).eval()
    a = generate(model, [1, 2, 3], max_new_tokens=12, seed=7, top_k=5)
    b = generate(model, [1, 2, 3], max_new_tokens=12, seed=7, top_k=5)
    assert a == b and len(a) == 12
    greedy = generate(model, [1, 2, 3], max_new_tokens=1, temperature=0.0)
    top1 = generate(model, [1, 2, 3], max_new_tokens=1, top_k=1, seed=3)
    assert greedy == top1


def test_generation_stops_at_the_end_of_sequence_id() -> None:
    torch.manual_seed(0)
    model = GPT(small("llama")).eval()
    first = generate(model, [1, 2], max_new_tokens=1, temperature=0.0)[0]
    assert generate(model, [1, 2], max_new_tokens=8, temperature=0.0, eos_id=first) == []


def test_empty_prompt_is_rejected() -> None:
    with pytest.raises(ValueError, match="prompt_ids"):
        generate(GPT(small("llama")), [], max_new_tokens=1)
