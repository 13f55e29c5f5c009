from __future__ import annotations

import torch

from docllm.ports.inference import GenerationParams
from docllm.serving.sampling import apply_repetition_penalty, choose, filter_top_k, filter_top_p, needs_sampling


def test_temperature_zero_is_the_argmax() -> None:
    assert choose(torch.tensor([0.1, 3.0, 2.9]), GenerationParams(temperature=0)) == 1


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens() -> None:
    logits = torch.tensor([2.0, -1.0, 2.0, -1.0])
    seen = torch.tensor([True, True, False, False])
    assert apply_repetition_penalty(logits, seen, 2.0).tolist() == [1.0, -2.0, 2.0, -1.0]


def test_repetition_penalty_changes_a_greedy_choice() -> None:
    logits = torch.tensor([3.0, 2.0])
    seen = torch.tensor([True, False])
    assert choose(logits, GenerationParams(repetition_penalty=2.0), seen=seen) == 1


def test_top_k_keeps_the_k_largest() -> None:
    out = filter_top_k(torch.tensor([1.0, 5.0, 3.0, 4.0]), 2)
    assert torch.isfinite(out).tolist() == [False, True, False, True]


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert torch.isfinite(filter_top_p(logits, 0.7)).tolist() == [True, True, False, False]
    assert torch.isfinite(filter_top_p(logits, 0.5)).tolist() == [True, False, False, False]
    assert torch.isfinite(filter_top_p(logits, 0.01)).tolist() == [True, False, False, False]


def test_a_seed_reproduces_a_sample_and_top_k_one_is_greedy() -> None:
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    params = GenerationParams(temperature=1.5, top_p=0.95)

    def draws(seed: int) -> list[int]:
        g = torch.Generator().manual_seed(seed)
        return [choose(logits, params, generator=g) for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert choose(logits, GenerationParams(temperature=1.0, top_k=1)) == int(logits.argmax())


def test_only_sampling_or_penalties_need_a_row_of_their_own() -> None:
    assert not needs_sampling(GenerationParams())
    assert needs_sampling(GenerationParams(temperature=0.7))
    assert needs_sampling(GenerationParams(repetition_penalty=1.1))
