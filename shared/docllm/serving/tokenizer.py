"""Text to ids and back for the engine, and the text deltas a stream sends.

Two backends read an export's tokenizer files: SentencePiece (``tokenizer.model``, preferred:
it encodes a prompt several times faster than ``tokenizers`` and it is what the model was
trained with) and the ``tokenizers`` library (``tokenizer.json``, for exports that ship only
that). Neither adds BOS: the export's ``tokenizer_config.json`` says ``add_bos_token: false``,
because the training shards separate documents by EOS alone; vLLM reading the same export
encodes a prompt the same way, so both engines see the same ids. A config that asks for BOS
gets it.

Streaming needs care: one token may be half of a UTF-8 character (byte-fallback pieces), and
decoding a piece on its own can drop or add the space a neighbour gives it.
:class:`IncrementalDecoder` therefore decodes a short window of ids ending at the newest one,
and emits only what the newest id added to the window's text, holding it back while the text
ends in U+FFFD (an incomplete character that the next byte piece will finish).

Example
-------
>>> tok = load_tokenizer(Path("out/hf"))  # doctest: +SKIP
>>> dec = IncrementalDecoder(tok, prompt_ids=tok.encode("Amazon S3"))  # doctest: +SKIP
>>> "".join(dec.push(i) for i in new_ids) + dec.flush()  # doctest: +SKIP
' buckets hold objects'
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from docllm.model.exceptions import TokenizerFilesError

REPLACEMENT = "\ufffd"
#: Prompt ids kept before the first new id so that its leading space decodes as it would in context.
CONTEXT_IDS = 4


class TextTokenizer(ABC):
    """What the engine needs: encode a prompt, decode ids, the special ids."""

    eos_id: int | None
    bos_id: int | None
    add_bos: bool

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without special tokens."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``, special tokens left out."""

    def encode_prompt(self, text: str) -> list[int]:
        """A prompt's ids: BOS first when the tokenizer config asks for it; never empty.

        An empty prompt starts after a document boundary: BOS if the tokenizer has one, else EOS
        (the shards' separator), so that the model has one position to predict from.
        """
        ids = self.encode(text)
        start = self.bos_id if self.bos_id is not None else self.eos_id
        if start is not None and (self.add_bos or not ids):
            ids = [start, *ids]
        if not ids:
            raise TokenizerFilesError("the tokenizer has neither BOS nor EOS: cannot start from an empty prompt")
        return ids


class SentencePieceTextTokenizer(TextTokenizer):
    def __init__(self, model_file: Path, *, add_bos: bool = False) -> None:
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.eos_id = _special(self._sp.eos_id())
        self.bos_id = _special(self._sp.bos_id())
        self.add_bos = add_bos

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def decode(self, ids: list[int]) -> str:
        return str(self._sp.decode(ids))


class HFTextTokenizer(TextTokenizer):
    """``tokenizer.json`` through the ``tokenizers`` library (no ``transformers`` import: faster start)."""

    def __init__(self, tokenizer_file: Path, config: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self._tk = Tokenizer.from_file(str(tokenizer_file))
        self.eos_id = self._token_id(config.get("eos_token"))
        self.bos_id = self._token_id(config.get("bos_token"))
        self.add_bos = bool(config.get("add_bos_token", False))

    def _token_id(self, token: object) -> int | None:
        if isinstance(token, dict):  # {"content": "</s>", ...} in some configs
            token = token.get("content")
        if not isinstance(token, str):
            return None
        found = self._tk.token_to_id(token)
        return int(found) if found is not None else None

    def encode(self, text: str) -> list[int]:
        return list(self._tk.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self._tk.decode(ids, skip_special_tokens=True))


def _special(i: int) -> int | None:
    return i if i >= 0 else None


def load_tokenizer(export_dir: Path) -> TextTokenizer:
    """The export's tokenizer: ``tokenizer.model`` if present, else ``tokenizer.json``."""
    config_file = export_dir / "tokenizer_config.json"
    config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
    if (export_dir / "tokenizer.model").exists():
        return SentencePieceTextTokenizer(
            export_dir / "tokenizer.model", add_bos=bool(config.get("add_bos_token", False))
        )
    if (export_dir / "tokenizer.json").exists():
        return HFTextTokenizer(export_dir / "tokenizer.json", config)
    raise TokenizerFilesError(f"{export_dir} holds neither tokenizer.model nor tokenizer.json")


class IncrementalDecoder:
    """Turns new ids, one at a time, into the text they add (see the module docstring)."""

    def __init__(self, tokenizer: TextTokenizer, prompt_ids: list[int]) -> None:
        self._tok = tokenizer
        self._ids = list(prompt_ids[-CONTEXT_IDS:])
        self._start = 0  # window start: ids before it are fully emitted and no longer decoded
        self._read = len(self._ids)  # ids before this one have had their text emitted

    def push(self, token: int) -> str:
        """The text ``token`` completes ('' while it ends in a partial character)."""
        self._ids.append(token)
        return self._emit(final=False)

    def flush(self) -> str:
        """Whatever is held back when the sequence ends (a partial character decodes as U+FFFD)."""
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> str:
        if self._read == len(self._ids):
            return ""
        before = self._tok.decode(self._ids[self._start : self._read])
        text = self._tok.decode(self._ids[self._start :])
        if not final and (len(text) <= len(before) or text.endswith(REPLACEMENT)):
            return ""
        delta = text[len(before) :]
        self._start, self._read = self._read, len(self._ids)
        # Keep the list short: ids before the window start are never decoded again.
        if self._start > 64:
            del self._ids[: self._start]
            self._read -= self._start
            self._start = 0
        return delta
