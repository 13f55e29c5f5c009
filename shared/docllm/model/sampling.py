"""Text generation helpers over :class:`docllm.model.gpt.GPT` and an export directory.

Example
-------
>>> from docllm.model import generate_text
>>> print(generate_text(Path("out/hf"), "Amazon S3 buckets", max_new_tokens=40))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from docllm.model.exceptions import TokenizerFilesError
from docllm.model.gpt import GPT


def generate(
    model: GPT,
    prompt_ids: list[int],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_k: int | None = 50,
    eos_id: int | None = None,
    seed: int | None = None,
) -> list[int]:
    """Sample a continuation of ``prompt_ids``; returns only the new ids.

    Example
    -------
    >>> generate(model, [1, 42, 7], max_new_tokens=5, seed=0)  # doctest: +SKIP
    [311, 12, 9, 77, 2]
    """
    if not prompt_ids:
        raise ValueError("prompt_ids must hold at least one token (e.g. the BOS id)")
    device = next(model.parameters()).device
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, eos_id=eos_id, generator=gen)
    new = out[0, len(prompt_ids) :].tolist()
    if eos_id is not None and eos_id in new:
        new = new[: new.index(eos_id)]
    return new


def generate_text(
    export_dir: Path,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int | None = 0,
) -> str:
    """Load an export written by :func:`docllm.model.export.export_hf` and continue ``prompt``.

    The tokenizer is read from the export (``tokenizer.json`` through transformers,
    else ``tokenizer.model`` through SentencePiece).
    """
    from docllm.model.export import load_hf_export, read_tokenizer_info

    model = load_hf_export(export_dir)
    info = read_tokenizer_info(export_dir)
    encode: Callable[[str], list[int]]
    finish: Callable[[list[int], list[int]], str]  # (prompt ids, new ids) -> full text
    if (export_dir / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(export_dir))

        def encode(text: str) -> list[int]:
            return list(tok.encode(text, add_special_tokens=False))

        def finish(ids: list[int], new: list[int]) -> str:
            return prompt + str(tok.decode(new, skip_special_tokens=True))
    elif (export_dir / "tokenizer.model").exists():
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(export_dir / "tokenizer.model"))

        def encode(text: str) -> list[int]:
            return list(sp.encode(text))

        def finish(ids: list[int], new: list[int]) -> str:
            return str(sp.decode(ids + new))
    else:
        raise TokenizerFilesError(f"{export_dir} holds no tokenizer files")
    ids = encode(prompt)
    bos = [info.bos_id] if info.bos_id is not None else []
    new = generate(
        model,
        bos + ids,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        eos_id=info.eos_id,
        seed=seed,
    )
    return finish(ids, new)
