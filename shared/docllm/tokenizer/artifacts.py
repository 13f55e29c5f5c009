"""What a tokenizer version leaves behind: its card, its ``result.json``, and its state record.

Artefacts under ``s3://<artifact_bucket>/tokenizers/<version>/``:

=========================  ====================================================
``tokenizer.model``        SentencePiece model (the source of truth)
``tokenizer.json``         Hugging Face fast tokenizer (same ids)
``tokenizer_config.json``  loads with ``AutoTokenizer.from_pretrained``
``vocab.json``             piece -> id
``card.json``              :class:`TokenizerCard`: version, data, settings, hash
``result.json``            :class:`TokenizerResult`, published last
=========================  ====================================================

Example::

    summary = find_tokenizer(state, version)
    if summary is None:
        runner.submit(tokenizer_job_spec(...))
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from docllm.ports.state import StateStore
from docllm.records import utcnow
from docllm.tokenizer.settings import TokenizerSettings

TOKENIZERS_PK = "tokenizers"


class SpecialTokens(BaseModel):
    unk_id: int
    bos_id: int
    eos_id: int
    pad_id: int
    unk: str
    bos: str
    eos: str
    pad: str


class TokenizerCard(BaseModel):
    """Everything about how a tokenizer was made (``card.json``)."""

    version: str
    dataset_version: str
    created_at: str = Field(default_factory=utcnow)
    settings: TokenizerSettings
    vocab_size: int = Field(description="pieces in the model (= model embedding rows)")
    special_tokens: SpecialTokens
    user_defined_symbols: list[str]
    model_sha256: str = Field(description="sha256 of tokenizer.model")
    train_documents: int
    sample_chunks: int
    sample_bytes: int
    sample_lines: int
    long_lines_cut: int
    training_seconds: float
    sentencepiece_version: str
    tokenizers_version: str = Field(description="Hugging Face tokenizers that wrote tokenizer.json")


class TokenizerResult(BaseModel):
    """``result.json``: what the completion handler needs for "Tokenizer Trained"."""

    version: str
    dataset_version: str
    vocab_size: int = Field(gt=0)
    model_type: str
    model_sha256: str
    eos_id: int
    bos_id: int
    pad_id: int
    unk_id: int
    training_seconds: float
    files: list[str]


class TokenizerSummary(BaseModel):
    """State record ``pk="tokenizers"``, ``sk=version``."""

    version: str
    dataset_version: str
    artifacts_uri: str
    vocab_size: int
    model_type: str
    model_sha256: str
    created_at: str = Field(default_factory=utcnow)


def summarize_tokenizer(result: TokenizerResult, artifacts_uri: str) -> TokenizerSummary:
    """What the state remembers of a trained tokenizer, so later builds of the same version reuse it."""
    return TokenizerSummary(
        version=result.version,
        dataset_version=result.dataset_version,
        artifacts_uri=artifacts_uri,
        vocab_size=result.vocab_size,
        model_type=result.model_type,
        model_sha256=result.model_sha256,
    )


def find_tokenizer(state: StateStore, version: str) -> TokenizerSummary | None:
    """The recorded tokenizer of this version, or None (then it must be trained)."""
    item = state.get(TOKENIZERS_PK, version)
    return TokenizerSummary.model_validate(item) if item else None


def list_tokenizers(state: StateStore) -> list[TokenizerSummary]:
    rows = [TokenizerSummary.model_validate(item) for _, item in state.query(TOKENIZERS_PK)]
    return sorted(rows, key=lambda s: (s.created_at, s.version))
