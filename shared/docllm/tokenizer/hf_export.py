"""Export a SentencePiece model as Hugging Face ``tokenizer.json`` + ``tokenizer_config.json``.

Built with the ``tokenizers`` library alone (no ``transformers`` import: it
costs the tokenizer job about a second and a half of start-up), and given
exactly the behaviour of our SentencePiece settings:

* model: BPE with the vocabulary in SentencePiece id order and merges ranked by
  the id of the piece they produce (SentencePiece BPE merges the best-scored,
  i.e. lowest-id, piece first), or Unigram with SentencePiece's scores; byte
  fallback in both;
* normaliser: spaces become ``▁``, nothing prepended (``add_dummy_prefix`` is off);
* no pre-tokenizer (SentencePiece does not split text before its model runs);
* newline/tab (user-defined symbols) as added tokens matched before the model,
  the control pieces as special tokens;
* decoder: ``▁`` back to space, byte pieces back to bytes.

``tests/unit/tokenizer/test_hf_export.py`` checks that ``AutoTokenizer`` then
gives the same ids as SentencePiece and decodes losslessly, on generated text
and on a sample of the real corpus.

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

HF_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json")

# sentencepiece_model.proto: ModelProto.SentencePiece.Type and TrainerSpec.ModelType
_CONTROL, _USER_DEFINED = 3, 4
_UNIGRAM, _BPE = 1, 2


def bpe_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Every split of every piece into two pieces of ``vocab``, ranked as SentencePiece merges.

    Rank by the id of the merged piece, then by the ids of its halves, so a
    tie between two ways of building the same piece is broken the same way on
    every run.

    >>> bpe_merges({"a": 0, "b": 1, "ab": 2, "abb": 3})
    [('a', 'b'), ('ab', 'b')]
    """
    ranked: list[tuple[int, int, int, str, str]] = []
    get = vocab.get  # a 32k vocabulary has ~200k cuts: keep the loop lean
    for piece, pid in vocab.items():
        for cut in range(1, len(piece)):
            lid = get(piece[:cut])
            if lid is None:
                continue
            rid = get(piece[cut:])
            if rid is not None:
                ranked.append((pid, lid, rid, piece[:cut], piece[cut:]))
    ranked.sort()
    return [(left, right) for _, _, _, left, right in ranked]


def load_model_proto(model_bytes: bytes) -> Any:
    """The parsed ``ModelProto`` of a serialized SentencePiece model (pieces, trainer spec)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString(model_bytes)
    return proto


def build_tokenizer(proto: Any) -> Any:
    """A ``tokenizers.Tokenizer`` that encodes and decodes like the SentencePiece model ``proto``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from tokenizers.models import Model

    pieces = [(p.piece, p.score, p.type) for p in proto.pieces]
    kind = proto.trainer_spec.model_type
    if kind == _BPE:
        vocab = {piece: i for i, (piece, _, _) in enumerate(pieces)}
        model: Model = models.BPE(
            vocab=vocab,
            merges=bpe_merges(vocab),
            unk_token=pieces[proto.trainer_spec.unk_id][0],
            fuse_unk=True,
            byte_fallback=True,
        )
    elif kind == _UNIGRAM:
        model = models.Unigram(
            [(piece, score) for piece, score, _ in pieces], unk_id=proto.trainer_spec.unk_id, byte_fallback=True
        )
    else:
        raise TokenizerTrainingError(f"SentencePiece model type {kind} has no Hugging Face export (bpe or unigram)")
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_tokens([AddedToken(p, normalized=False, special=False) for p, _, t in pieces if t == _USER_DEFINED])
    tok.add_special_tokens([AddedToken(p, normalized=False, special=True) for p, _, t in pieces if t == _CONTROL])
    return tok


def export_hf(model_path: Path, out_dir: Path, *, model_max_length: int | None = None) -> list[Path]:
    """Write :data:`HF_FILES` for ``model_path`` into ``out_dir``; return every file there."""
    proto = load_model_proto(model_path.read_bytes())
    tok = build_tokenizer(proto)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    specials = {"bos_token": BOS_PIECE, "eos_token": EOS_PIECE, "unk_token": UNK_PIECE, "pad_token": PAD_PIECE}
    config: dict[str, object] = {
        # Understood by transformers 4.x (vLLM, Bedrock Custom Model Import) and 5.x alike.
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length or 10**30,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n", encoding="utf-8")
    return sorted(p for p in out_dir.iterdir() if p.is_file())
