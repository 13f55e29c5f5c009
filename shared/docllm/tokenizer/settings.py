"""Tokenizer settings and content-addressed versions.

Kept light (pydantic only) so Lambda handlers can import it without
SentencePiece or torch. The job specs that train a tokenizer and encode
shards belong to the stages that launch them (``docllm.service_layer.tokenizer``,
``docllm.service_layer.shards``).

Example::

    settings = TokenizerSettings(vocab_size=32000)
    version = tokenizer_version(settings, manifest)
    tokenizer_prefix("artifacts", version)   # 's3://artifacts/tokenizers/tok-…/'
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from docllm.dataset.versions import DatasetManifest
from docllm.tokenizer.exceptions import TokenizerSettingsError

# The ids Llama-style converters and loaders expect (unk 0, bos 1, eos 2); pad
# follows at 3 so the first four ids are the control block.
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3
UNK_PIECE, BOS_PIECE, EOS_PIECE, PAD_PIECE = "<unk>", "<s>", "</s>", "<pad>"
# Newline and tab never reach the trainer as characters (its input is one line
# per sentence), so they are reserved as single-token symbols: code indentation
# and paragraph structure round-trip without byte-fallback sequences.
WHITESPACE_SYMBOLS: tuple[str, ...] = ("\n", "\t")
FORMAT_VERSION = 1


class TokenizerSettings(BaseModel):
    """What a tokenizer is trained with. Every field but ``num_threads`` is part of its version."""

    model_config = ConfigDict(extra="forbid")

    model_type: Literal["bpe", "unigram"] = Field(default="bpe", description="SentencePiece algorithm")
    vocab_size: int = Field(
        default=32000, ge=320, le=2**20, description="requested size; rounded up to pad_to_multiple"
    )
    pad_to_multiple: int = Field(
        default=64, ge=1, le=4096, description="vocabulary is a multiple of this (GPU-friendly embedding)"
    )
    sample_bytes: int = Field(
        default=128 * 2**20,
        ge=1024,
        description="at most about this much training text is given to SentencePiece (bounds its memory)",
    )
    character_coverage: float = Field(
        default=0.9995,
        gt=0,
        le=1,
        description="share of characters with their own piece; the rest byte-fallback",
    )
    split_digits: bool = Field(default=True, description="every digit its own piece (numbers stay regular)")
    extra_symbols: list[str] = Field(
        default_factory=list, description="user-defined symbols kept whole, beyond newline and tab"
    )
    max_sentence_length: int = Field(
        default=4192, ge=256, le=2**20, description="bytes; longer training lines are cut at whitespace"
    )
    seed: int = Field(default=0, ge=0, description="seed of the input sampling")
    num_threads: int = Field(default=0, ge=0, description="trainer threads; 0: every core (not versioned)")

    @property
    def effective_vocab_size(self) -> int:
        """``vocab_size`` rounded up to ``pad_to_multiple``: what is trained and what the model embeds.

        >>> TokenizerSettings(vocab_size=32001).effective_vocab_size
        32064
        """
        m = self.pad_to_multiple
        return -(-self.vocab_size // m) * m

    def to_hyperparameters(self) -> dict[str, str]:
        """SageMaker hyperparameters: every value a string (JSON for non-strings)."""
        out = {}
        for name, value in self.model_dump().items():
            out[name] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_hyperparameters(cls, hp: dict[str, str]) -> TokenizerSettings:
        """Parse the settings out of job hyperparameters (other keys are ignored).

        Raises
        ------
        TokenizerSettingsError
            Naming the offending hyperparameter.
        """
        raw: dict[str, object] = {}
        for name in cls.model_fields:
            if name not in hp:
                continue
            value = hp[name]
            try:
                raw[name] = json.loads(value)
            except (json.JSONDecodeError, TypeError):
                raw[name] = value  # a bare string such as bpe
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in e.errors())
            raise TokenizerSettingsError(f"invalid tokenizer hyperparameter(s) {fields}: {e}") from e


def tokenizer_version(settings: TokenizerSettings, manifest: DatasetManifest) -> str:
    """Content address of a tokenizer: its settings and the train split's document hashes.

    Validation and test documents do not enter it, so a dataset that changes only
    there reuses the tokenizer.
    """
    payload = {
        "format": FORMAT_VERSION,
        "settings": settings.model_dump(exclude={"num_threads"}),
        "train": sorted((d.doc_key, d.sha256) for d in manifest.documents if d.split == "train"),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "tok-" + hashlib.sha256(blob).hexdigest()[:16]


def tokenizer_prefix(artifact_bucket: str, version: str) -> str:
    """Where the artefacts of a tokenizer version are published."""
    return f"s3://{artifact_bucket}/tokenizers/{version}/"
