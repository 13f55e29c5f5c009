"""Hugging Face export: our weights renamed (and, for fused q|k|v, re-laid out) into each HF class.

``gelu-learned`` → ``GPTBigCodeForCausalLM``, ``gelu-rotary`` → ``GPTNeoXForCausalLM``,
``llama`` → ``LlamaForCausalLM``. The export directory holds ``config.json``,
``model.safetensors``, ``generation_config.json``, the tokenizer files, a model
card ``README.md`` and ``docllm_model.json`` (our own config, so the export can
be loaded back into :class:`docllm.model.gpt.GPT` without guessing).

Example
-------
>>> from docllm.model.gpt import GPT
>>> from docllm.model.config import ModelConfig
>>> model = GPT(ModelConfig.preset("tiny", vocab_size=512, variant="llama"))
>>> export_hf(model, Path("/tmp/export"), tokenizer_dir=None)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from docllm.model.config import ModelConfig
from docllm.model.exceptions import ExportError, TokenizerFilesError
from docllm.model.gpt import GPT

CONFIG_FILE = "docllm_model.json"
TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)


@dataclass(frozen=True)
class TokenizerInfo:
    """What the model needs from a tokenizer: its size and special ids (None when absent)."""

    vocab_size: int
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None


def read_tokenizer_info(tokenizer_dir: Path) -> TokenizerInfo:
    """Vocabulary size and special ids, through ``transformers`` or, failing that, SentencePiece.

    Example
    -------
    >>> read_tokenizer_info(Path("tokenizer")).vocab_size  # doctest: +SKIP
    8000
    """
    if not tokenizer_dir.is_dir():
        raise TokenizerFilesError(f"tokenizer directory {tokenizer_dir} does not exist")
    if (tokenizer_dir / "tokenizer.json").exists() or (tokenizer_dir / "tokenizer_config.json").exists():
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
            return TokenizerInfo(len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
        except (OSError, ValueError, KeyError, TypeError) as e:
            if not (tokenizer_dir / "tokenizer.model").exists():
                raise TokenizerFilesError(f"cannot read tokenizer in {tokenizer_dir}: {e}") from e
    if (tokenizer_dir / "tokenizer.model").exists():
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(tokenizer_dir / "tokenizer.model"))

        def special(i: int) -> int | None:
            return i if i >= 0 else None

        return TokenizerInfo(sp.get_piece_size(), special(sp.bos_id()), special(sp.eos_id()), special(sp.pad_id()))
    raise TokenizerFilesError(f"no tokenizer.json, tokenizer_config.json or tokenizer.model in {tokenizer_dir}")


# --- weight mapping --------------------------------------------------------


def _interleave_qkv(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Rows [q | k | v] (each head-major) → rows grouped per head [q_h k_h v_h] (BigCode, NeoX layout)."""
    rest = w.shape[1:]
    hs = w.shape[0] // (3 * n_head)
    return w.reshape(3, n_head, hs, *rest).transpose(0, 1).reshape(3 * n_head * hs, *rest).contiguous()


def _deinterleave_qkv(w: torch.Tensor, n_head: int) -> torch.Tensor:
    rest = w.shape[1:]
    hs = w.shape[0] // (3 * n_head)
    return w.reshape(n_head, 3, hs, *rest).transpose(0, 1).reshape(3 * n_head * hs, *rest).contiguous()


def _layer_names(cfg: ModelConfig) -> dict[str, str]:
    """Our per-layer parameter suffix → the HF suffix (fused tensors handled separately)."""
    if cfg.variant == "gelu-learned":
        return {
            "ln_1.weight": "ln_1.weight",
            "ln_1.bias": "ln_1.bias",
            "ln_2.weight": "ln_2.weight",
            "ln_2.bias": "ln_2.bias",
            "attn.c_proj.weight": "attn.c_proj.weight",
            "attn.c_proj.bias": "attn.c_proj.bias",
            "mlp.c_fc.weight": "mlp.c_fc.weight",
            "mlp.c_fc.bias": "mlp.c_fc.bias",
            "mlp.c_proj.weight": "mlp.c_proj.weight",
            "mlp.c_proj.bias": "mlp.c_proj.bias",
        }
    if cfg.variant == "gelu-rotary":
        return {
            "ln_1.weight": "input_layernorm.weight",
            "ln_1.bias": "input_layernorm.bias",
            "ln_2.weight": "post_attention_layernorm.weight",
            "ln_2.bias": "post_attention_layernorm.bias",
            "attn.c_proj.weight": "attention.dense.weight",
            "attn.c_proj.bias": "attention.dense.bias",
            "mlp.c_fc.weight": "mlp.dense_h_to_4h.weight",
            "mlp.c_fc.bias": "mlp.dense_h_to_4h.bias",
            "mlp.c_proj.weight": "mlp.dense_4h_to_h.weight",
            "mlp.c_proj.bias": "mlp.dense_4h_to_h.bias",
        }
    return {
        "ln_1.weight": "input_layernorm.weight",
        "ln_2.weight": "post_attention_layernorm.weight",
        "attn.c_proj.weight": "self_attn.o_proj.weight",
        "mlp.c_proj.weight": "mlp.down_proj.weight",
    }


def _prefixes(cfg: ModelConfig) -> tuple[str, dict[str, str]]:
    """HF layer prefix and the names of the top-level tensors."""
    if cfg.variant == "gelu-learned":
        return "transformer.h", {
            "transformer.wte.weight": "transformer.wte.weight",
            "transformer.wpe.weight": "transformer.wpe.weight",
            "transformer.ln_f.weight": "transformer.ln_f.weight",
            "transformer.ln_f.bias": "transformer.ln_f.bias",
        }
    if cfg.variant == "gelu-rotary":
        return "gpt_neox.layers", {
            "transformer.wte.weight": "gpt_neox.embed_in.weight",
            "transformer.ln_f.weight": "gpt_neox.final_layer_norm.weight",
            "transformer.ln_f.bias": "gpt_neox.final_layer_norm.bias",
        }
    return "model.layers", {
        "transformer.wte.weight": "model.embed_tokens.weight",
        "transformer.ln_f.weight": "model.norm.weight",
    }


def to_hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict → the HF class's (the tied head is left out, as HF saves tied models)."""
    hf_prefix, top = _prefixes(cfg)
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in top.items():
        out[theirs] = state[ours]
    names = _layer_names(cfg)
    for i in range(cfg.n_layer):
        src, dst = f"transformer.h.{i}.", f"{hf_prefix}.{i}."
        for ours, theirs in names.items():
            out[dst + theirs] = state[src + ours]
        qkv_w = state[src + "attn.c_attn.weight"]
        if cfg.variant == "llama":
            q, k, v = qkv_w.chunk(3, dim=0)
            out[dst + "self_attn.q_proj.weight"] = q
            out[dst + "self_attn.k_proj.weight"] = k
            out[dst + "self_attn.v_proj.weight"] = v
            gate, up = state[src + "mlp.c_fc.weight"].chunk(2, dim=0)
            out[dst + "mlp.gate_proj.weight"] = gate
            out[dst + "mlp.up_proj.weight"] = up
        else:
            fused = "attn.c_attn" if cfg.variant == "gelu-learned" else "attention.query_key_value"
            out[dst + fused + ".weight"] = _interleave_qkv(qkv_w, cfg.n_head)
            out[dst + fused + ".bias"] = _interleave_qkv(state[src + "attn.c_attn.bias"], cfg.n_head)
    # safetensors refuses shared or non-contiguous storage.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}


def from_hf_state_dict(hf: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Inverse of :func:`to_hf_state_dict` (the tied head is restored from the embedding)."""
    hf_prefix, top = _prefixes(cfg)
    state: dict[str, torch.Tensor] = {}
    try:
        for ours, theirs in top.items():
            state[ours] = hf[theirs]
        names = _layer_names(cfg)
        for i in range(cfg.n_layer):
            src, dst = f"transformer.h.{i}.", f"{hf_prefix}.{i}."
            for ours, theirs in names.items():
                state[src + ours] = hf[dst + theirs]
            if cfg.variant == "llama":
                state[src + "attn.c_attn.weight"] = torch.cat(
                    [hf[dst + f"self_attn.{p}_proj.weight"] for p in "qkv"], dim=0
                )
                state[src + "mlp.c_fc.weight"] = torch.cat(
                    [hf[dst + "mlp.gate_proj.weight"], hf[dst + "mlp.up_proj.weight"]], dim=0
                )
            else:
                fused = "attn.c_attn" if cfg.variant == "gelu-learned" else "attention.query_key_value"
                for part in ("weight", "bias"):
                    state[src + f"attn.c_attn.{part}"] = _deinterleave_qkv(hf[dst + f"{fused}.{part}"], cfg.n_head)
    except KeyError as e:
        raise ExportError(f"export lacks tensor {e.args[0]!r} expected for variant {cfg.variant}") from e
    state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def hf_config(cfg: ModelConfig, tok: TokenizerInfo | None = None) -> dict[str, Any]:
    """``config.json`` for the variant's HF class, with every setting that makes it compute what we do."""
    ids: dict[str, Any] = {
        "bos_token_id": tok.bos_id if tok else None,
        "eos_token_id": tok.eos_id if tok else None,
        "pad_token_id": tok.pad_id if tok else None,
    }
    common: dict[str, Any] = {
        "architectures": [cfg.hf_architecture],
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": True,
        "initializer_range": cfg.init_std,
        "torch_dtype": "float32",
        "use_cache": True,
        **ids,
    }
    if cfg.variant == "gelu-learned":
        return {
            **common,
            "model_type": "gpt_bigcode",
            "n_embd": cfg.n_embd,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_positions": cfg.block_size,
            "n_inner": cfg.mlp_hidden,
            "activation_function": "gelu_pytorch_tanh",
            "layer_norm_epsilon": cfg.norm_eps,
            "multi_query": False,
            "scale_attn_weights": True,
            "attention_softmax_in_fp32": True,
            "scale_attention_softmax_in_fp32": True,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
        }
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.variant == "gelu-rotary":
        return {
            **common,
            "model_type": "gpt_neox",
            "hidden_size": cfg.n_embd,
            "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head,
            "intermediate_size": cfg.mlp_hidden,
            "hidden_act": "gelu_pytorch_tanh",
            "max_position_embeddings": cfg.block_size,
            "layer_norm_eps": cfg.norm_eps,
            "use_parallel_residual": False,
            "attention_bias": True,
            # Legacy keys (transformers 4.x, vLLM) and the 5.x rope_parameters, both full rotary.
            "rotary_pct": 1.0,
            "rotary_emb_base": cfg.rope_theta,
            "rope_theta": cfg.rope_theta,
            "rope_parameters": {**rope, "partial_rotary_factor": 1.0},
            "attention_dropout": 0.0,
            "hidden_dropout": 0.0,
        }
    return {
        **common,
        "model_type": "llama",
        "hidden_size": cfg.n_embd,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head,
        "head_dim": cfg.head_size,
        "intermediate_size": cfg.mlp_hidden,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.block_size,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": rope,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
    }


def model_card(
    card: dict[str, Any], *, default_name: str, about: Sequence[str], facts: Sequence[str] = (), use: Sequence[str]
) -> str:
    """A Hugging Face model card (``README.md``) of a text-generation model: front matter, a title
    (``card["name"]`` or ``default_name``), ``about``, ``facts`` and the rest of ``card`` as a list, ``use``."""
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "---",
        "",
        f"# {card.get('name', default_name)}",
        "",
        *about,
        "",
        *facts,
        *[f"- {k}: {v}" for k, v in card.items() if k != "name"],
        "",
        *use,
        "",
    ]
    return "\n".join(lines)


def _model_card(cfg: ModelConfig, n_params: int, card: dict[str, Any]) -> str:
    return model_card(
        card,
        default_name="docllm model",
        about=["A small decoder-only language model trained by docllm on an organisation's documentation."],
        facts=[
            f"- architecture: `{cfg.hf_architecture}` (docllm variant `{cfg.variant}`)",
            f"- parameters: {n_params:,}; layers {cfg.n_layer}, width {cfg.n_embd}, heads {cfg.n_head}",
            f"- context length: {cfg.block_size}; vocabulary (padded): {cfg.vocab_size}",
        ],
        use=[
            "Intended use: answering questions about the documentation it was trained on, with retrieval.",
            "It is small and will state wrong things confidently; cite sources and check answers.",
        ],
    )


def export_hf(
    model: GPT,
    out_dir: Path,
    *,
    tokenizer_dir: Path | None,
    card: dict[str, Any] | None = None,
    max_new_tokens: int = 256,
) -> Path:
    """Write a Hugging Face directory that ``AutoModelForCausalLM.from_pretrained`` loads exactly.

    Parameters
    ----------
    model
        Trained model (any device; weights are copied to CPU in their dtype).
    out_dir
        Created if missing; existing files of the same names are replaced.
    tokenizer_dir
        Its tokenizer files are copied beside the weights and its special ids go into the configs.
    card
        Extra ``key: value`` lines for the model card (family, dataset version, losses…).

    Example
    -------
    >>> card = {"family": "tiny-s3"}
    >>> export_hf(model, Path("out/hf"), tokenizer_dir=Path("tok"), card=card)  # doctest: +SKIP
    PosixPath('out/hf')
    """
    cfg = model.config
    tok = read_tokenizer_info(tokenizer_dir) if tokenizer_dir is not None else None
    if tok is not None and tok.vocab_size > cfg.vocab_size:
        raise ExportError(f"tokenizer has {tok.vocab_size} tokens but the model only {cfg.vocab_size} rows")
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = to_hf_state_dict(dict(model.state_dict()), cfg)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(hf_config(cfg, tok), indent=2) + "\n", encoding="utf-8")
    generation = {
        "bos_token_id": tok.bos_id if tok else None,
        "eos_token_id": tok.eos_id if tok else None,
        "pad_token_id": tok.pad_id if tok else None,
        "do_sample": True,
        "temperature": 0.8,
        "top_k": 50,
        "max_new_tokens": max_new_tokens,
    }
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    (out_dir / CONFIG_FILE).write_text(cfg.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).exists():
                shutil.copy2(tokenizer_dir / name, out_dir / name)
    n_params = sum(t.numel() for t in tensors.values())
    (out_dir / "README.md").write_text(_model_card(cfg, n_params, card or {}), encoding="utf-8")
    return out_dir


def load_hf_export(export_dir: Path, *, device: str | torch.device = "cpu") -> GPT:
    """Read an export written by :func:`export_hf` back into our :class:`GPT`.

    Example
    -------
    >>> model = load_hf_export(Path("out/hf"))  # doctest: +SKIP
    """
    cfg_path = export_dir / CONFIG_FILE
    if not cfg_path.exists():
        raise ExportError(f"{export_dir} has no {CONFIG_FILE}: not a docllm export")
    cfg = ModelConfig.model_validate_json(cfg_path.read_text(encoding="utf-8"))
    state = from_hf_state_dict(load_file(str(export_dir / "model.safetensors")), cfg)
    model = GPT(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ExportError(f"export does not match its config: missing {missing}, unexpected {unexpected}")
    return model.to(device)
