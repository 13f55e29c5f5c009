"""The batched cache is exact: every row decodes as ``GPT.generate`` decodes it alone."""

from __future__ import annotations

import pytest
import torch

from docllm.model.config import Variant
from docllm.serving.batch import (
    DecodeLinear,
    SlotCache,
    can_pack,
    decode_attention,
    decode_step,
    pack_for_decode,
    prefill,
    relayout_for_decode,
)
from tests.unit.serving.conftest import tiny_model

VARIANTS: list[Variant] = ["llama", "gelu-learned", "gelu-rotary"]


def reference(model: torch.nn.Module, prompt: list[int], n: int) -> list[int]:
    out = model.generate(torch.tensor([prompt]), n, temperature=0)  # type: ignore[operator]
    return list(out[0, len(prompt) :].tolist())


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_rows_of_different_lengths_decode_as_each_alone(variant: Variant, packed: bool) -> None:
    torch.set_num_threads(1)
    model = tiny_model(variant=variant, block_size=64)
    if packed:  # the engine's decoding linears: same greedy tokens as the plain model's
        reference_model = tiny_model(variant=variant, block_size=64)
        model = pack_for_decode(relayout_for_decode(model), rows=4)
    prompts = [[5, 9, 11], [7] * 12, [3, 20, 31, 40, 41, 42, 43], [100]]
    steps = 10
    cache = SlotCache(model, max_batch=4)
    with torch.inference_mode():
        out = [[int(prefill(model, cache, row, torch.tensor(p)).argmax())] for row, p in enumerate(prompts)]
        pos = [len(p) for p in prompts]
        for _ in range(steps - 1):
            tokens = torch.tensor([o[-1] for o in out])
            logits = decode_step(model, cache, tokens, torch.tensor(pos), max(pos) + 1)
            for o, t in zip(out, logits.argmax(-1).tolist(), strict=True):
                o.append(t)
            pos = [p + 1 for p in pos]
    assert out == [reference(reference_model if packed else model, p, steps) for p in prompts]


def test_a_moved_row_keeps_decoding_where_it_was() -> None:
    torch.set_num_threads(1)
    model = tiny_model(block_size=64)
    prompt = [5, 6, 7, 8, 9]
    cache = SlotCache(model, max_batch=3)
    with torch.inference_mode():
        first = int(prefill(model, cache, 2, torch.tensor(prompt)).argmax())
        cache.move(2, 0, len(prompt))
        cache.k[:, 2].zero_()
        cache.v[:, 2].zero_()
        logits = decode_step(model, cache, torch.tensor([first]), torch.tensor([len(prompt)]), len(prompt) + 1)
    assert [first, int(logits[0].argmax())] == reference(model, prompt, 2)


def test_relayout_keeps_values_and_shapes_and_the_tied_head() -> None:
    model = tiny_model(block_size=64)
    x = torch.randint(0, 400, (1, 20))
    with torch.inference_mode():
        before, _ = model(x)
        relayout_for_decode(model)
        after, _ = model(x)
    torch.testing.assert_close(after, before)
    assert model.lm_head.weight is model.transformer["wte"].weight
    assert not model.lm_head.weight.is_contiguous()  # (V, C) stored column-major


@pytest.mark.skipif(not can_pack(), reason="this torch has no oneDNN packed linear")
def test_packed_linears_match_the_plain_ones_for_any_number_of_rows_and_keep_the_tie() -> None:
    model = tiny_model(block_size=64)
    plain = tiny_model(block_size=64)
    pack_for_decode(model, rows=8)
    assert isinstance(model.lm_head, DecodeLinear)
    assert model.lm_head.weight is model.transformer["wte"].weight
    with torch.inference_mode():
        for rows in (1, 3, 8, 20):  # fewer, as many and more rows than packed for
            x = torch.randint(0, 400, (1, rows))
            torch.testing.assert_close(model(x)[0], plain(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not can_pack(torch.bfloat16), reason="this CPU cannot pack bf16 weights for oneDNN")
def test_bf16_linears_are_packed_even_for_one_row_and_match_the_plain_bf16_model() -> None:
    model = tiny_model(block_size=64).to(torch.bfloat16)
    plain = tiny_model(block_size=64).to(torch.bfloat16)
    pack_for_decode(model, rows=1)
    assert isinstance(model.lm_head, DecodeLinear) and model.lm_head.packed_for_one
    assert model.lm_head.weight is model.transformer["wte"].weight
    with torch.inference_mode():
        for rows in (1, 8):
            x = torch.randint(0, 400, (1, rows))
            # bf16 keeps 8 bits of mantissa; the two paths accumulate in different orders
            torch.testing.assert_close(model(x)[0].float(), plain(x)[0].float(), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("rows", [1, 5])
def test_written_out_bf16_attention_matches_the_kernel(rows: int) -> None:
    torch.manual_seed(0)
    q = torch.randn(rows, 4, 1, 16)
    keys, values = torch.randn(rows, 4, 40, 16), torch.randn(rows, 4, 40, 16)
    mask = None
    if rows > 1:  # each row sees its own number of keys, as in a continuous batch
        mask = (torch.arange(40)[None, :] < torch.tensor([40, 3, 17, 1, 29])[:, None])[:, None, None, :]
    expected = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    torch.testing.assert_close(decode_attention(q, keys, values, mask), expected)  # fp32: the kernel itself
    got = decode_attention(*(t.to(torch.bfloat16) for t in (q, keys, values)), mask)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, rtol=0.03, atol=0.03)
