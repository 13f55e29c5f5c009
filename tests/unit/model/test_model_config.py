from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from docllm.model.config import PRESETS, ModelConfig, pad_vocab


@pytest.mark.parametrize(("raw", "padded"), [(1, 64), (64, 64), (65, 128), (50257, 50304)])
def test_vocabulary_is_padded_to_a_multiple_of_64(raw: int, padded: int) -> None:
    assert pad_vocab(raw) == padded
    assert ModelConfig.preset("tiny", vocab_size=raw).vocab_size == padded


def test_preset_overrides_apply_on_top_of_the_shape() -> None:
    cfg = ModelConfig.preset("124m", vocab_size=32000, variant="llama", block_size=4096)
    assert (cfg.n_layer, cfg.n_embd, cfg.block_size, cfg.variant) == (12, 768, 4096, "llama")


def test_unknown_preset_is_rejected_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="tiny"):
        ModelConfig.preset("7b", vocab_size=100)


def test_width_not_divisible_by_heads_is_rejected() -> None:
    with pytest.raises(ValidationError, match="n_head"):
        ModelConfig(n_layer=1, n_head=3, n_embd=64, block_size=16, vocab_size=64)


def test_rotary_needs_an_even_head_size() -> None:
    with pytest.raises(ValidationError, match="even"):
        ModelConfig(variant="llama", n_layer=1, n_head=8, n_embd=24, block_size=16, vocab_size=64)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("variant", ["gelu-learned", "gelu-rotary", "llama"])
def test_parameter_count_from_the_shape_matches_the_built_model(name: str, variant: str) -> None:
    torch = pytest.importorskip("torch")
    from docllm.model.gpt import GPT

    cfg = ModelConfig.preset(name, vocab_size=1000, variant=variant)  # type: ignore[arg-type]
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = GPT(cfg)
    assert cfg.num_params(non_embedding=False) == model.num_params(non_embedding=False)


def test_124m_gpt2_shape_has_about_124m_parameters() -> None:
    cfg = ModelConfig.preset("124m", vocab_size=50257, block_size=1024)
    assert 123e6 < cfg.num_params(non_embedding=False) < 125e6


def test_config_module_imports_without_torch() -> None:
    code = "import sys, docllm.model, docllm.model.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
