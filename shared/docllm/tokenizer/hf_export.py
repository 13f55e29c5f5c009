"""Export a SentencePiece model as Hugging Face ``tokenizer.json`` + ``tokenizer_config.json``.

The fast tokenizer is assembled with ``transformers``' own SentencePiece
extractor and builder (the same code its converters run), then given exactly
the behaviour of our SentencePiece settings: spaces become ``▁`` with nothing
prepended, no pre-tokenizer (SentencePiece does not split either), byte
fallback, and newline/tab as added tokens that are matched before the model
runs. ``tests/unit/tokenizer`` checks that ``AutoTokenizer`` then yields the
same ids as SentencePiece and decodes losslessly.

The config names ``PreTrainedTokenizerFast`` (not a model-specific class) so
transformers 4.x and 5.x, vLLM and Bedrock Custom Model Import load the
``tokenizer.json`` as written; no BOS is added on encode, matching the shards
(documents there are separated by EOS only).

Example::

    export_hf(Path("tokenizer.model"), Path("out"))
    AutoTokenizer.from_pretrained("out")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docllm.tokenizer.exceptions import TokenizerTrainingError
from docllm.tokenizer.settings import BOS_PIECE, EOS_PIECE, PAD_PIECE, UNK_PIECE

HF_FILES = ("tokenizer.json", "tokenizer_config.json")


def export_hf(model_path: Path, out_dir: Path, *, model_max_length: int | None = None) -> list[Path]:
    """Write the Hugging Face files for ``model_path`` into ``out_dir``; return their paths."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import (
        SentencePieceExtractor,
        SpmConverter,
        import_protobuf,
    )

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(model_path.read_bytes())
    extracted: dict[str, Any] = SentencePieceExtractor(str(model_path)).extract(None)  # type: ignore[assignment]
    tok = SpmConverter.build_tokenizer_from_spm_proto(proto, extracted["vocab"], extracted.get("merges"))
    if tok is None:
        raise TokenizerTrainingError(f"{model_path}: transformers could not build a tokenizer from it")
    added: list[AddedToken] = extracted.get("additional_special_tokens", [])
    tok.add_tokens([t for t in added if not t.special])
    tok.add_special_tokens([t for t in added if t.special])
    kwargs: dict[str, object] = {}
    if model_max_length:
        kwargs["model_max_length"] = model_max_length
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_PIECE,
        eos_token=EOS_PIECE,
        unk_token=UNK_PIECE,
        pad_token=PAD_PIECE,
        clean_up_tokenization_spaces=False,
        **kwargs,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    # transformers 5 writes its internal backend name; 4.x (vLLM, Bedrock) knows only this one.
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["add_bos_token"] = False
    config["add_eos_token"] = False
    config["clean_up_tokenization_spaces"] = False
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return sorted(p for p in out_dir.iterdir() if p.is_file())
