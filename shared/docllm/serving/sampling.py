"""Choosing the next token from one row of logits, as the OpenAI parameters ask.

Order (as Hugging Face's logits processors and vLLM apply them): repetition penalty, then
temperature, then top-k, then top-p, then a draw from the softmax with the request's own
generator. Temperature 0 is greedy: the argmax after the repetition penalty.

The repetition penalty is the CTRL paper's (Keskar et al. 2019), as Hugging Face implements it:
every token already seen in the prompt or the completion has its logit divided by the penalty
when positive and multiplied by it when negative.

Example
-------
>>> import torch
>>> from docllm.ports.inference import GenerationParams
>>> choose(torch.tensor([0.1, 2.0, 0.3]), GenerationParams())
1
"""

from __future__ import annotations

import torch

from docllm.ports.inference import GenerationParams


def needs_sampling(params: GenerationParams) -> bool:
    """Whether a row needs more than the batch's argmax (sampling or a repetition penalty)."""
    return params.temperature > 0 or params.repetition_penalty != 1.0


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise the logits (V,) of the tokens marked in ``seen`` (V,) bool; returns a new tensor."""
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits (V,) (ties at the k-th value kept too); the rest become -inf."""
    if k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches ``p`` (nucleus sampling)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of the tokens ranked above each
    drop_sorted = mass_before >= p  # the first token always stays (mass before it is 0 < p)
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def choose(
    logits: torch.Tensor,
    params: GenerationParams,
    *,
    generator: torch.Generator | None = None,
    seen: torch.Tensor | None = None,
) -> int:
    """The next token for one row of logits (V,)."""
    logits = logits.float()
    if seen is not None and params.repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.temperature == 0:
        return int(logits.argmax())
    logits = logits / params.temperature
    if params.top_k is not None:
        logits = filter_top_k(logits, params.top_k)
    logits = filter_top_p(logits, params.top_p)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, num_samples=1, generator=generator))
