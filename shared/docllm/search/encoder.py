"""A small dual encoder learned from the organisation's own documents (inference: numpy only).

Issue 18's learned retrieval component. No public pretrained weights: the token embeddings are
trained from scratch by :mod:`docllm.search.encoder_train` (torch, a platform job:
``docllm.jobs.retriever_job``) on pairs drawn from a dataset version's **train split**, over the
platform's own SentencePiece tokenizer. What it learns is which pieces of text go together in the
documentation (a heading with its section, a sentence with the rest of its passage), so a question
that names none of a page's words can still land near it.

The model, deliberately tiny so that encoding the whole corpus fits the index build budget and a
query costs well under a millisecond on a CPU::

    ids      = tokenizer.encode(lowercase(text))[:max_tokens]
    vec(t)   = sum over ids of softplus(w[id]) * E[id]       # a learned weight per piece, IDF-like
    encode(t) = vec(t) / ||vec(t)||                          # cosine similarity = dot product

One tower for questions and passages (siamese): with little training data, sharing beats two towers.

Artefacts of a trained encoder (one directory): ``encoder.npz`` (``embeddings`` V x d float32,
``weights`` V float32), ``tokenizer.model`` (the SentencePiece model it was trained with) and
``card.json`` (:class:`EncoderCard`: versions of the dataset and tokenizer, settings, figures and
the sha256 of both model files, so a loaded encoder is traceable to its job and manifest).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from docllm.search.exceptions import EncoderArtifactError

ENCODER_FILE = "encoder.npz"
TOKENIZER_FILE = "tokenizer.model"
CARD_FILE = "card.json"

FloatArray = npt.NDArray[np.float32]


class EncoderSettings(BaseModel):
    """What an encoder is trained with; every field is part of its version."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(default=256, ge=8, le=4096, description="embedding width")
    max_tokens: int = Field(default=256, ge=8, le=8192, description="pieces of a passage kept (its start)")
    lowercase: bool = Field(default=True, description="lowercase text before tokenizing (both sides)")
    epochs: int = Field(default=3, ge=1, le=100)
    batch_size: int = Field(default=256, ge=8, le=8192, description="in-batch negatives: batch_size - 1 each")
    learning_rate: float = Field(default=2e-3, gt=0, le=1)
    temperature: float = Field(default=0.05, gt=0, le=1, description="softmax temperature of the InfoNCE loss")
    cloze_per_chunk: int = Field(default=1, ge=0, le=8, description="inverse-cloze pairs drawn per chunk")
    hard_negatives: bool = Field(
        default=False,
        description="each heading and question pair also gets the passage of another page that BM25 ranks "
        "first for its query, as one more negative (docllm.search.encoder_train.mine_hard_negatives)",
    )
    seed: int = Field(default=0, ge=0)
    max_seconds: float = Field(default=600.0, gt=0, description="training stops after this wall time (not versioned)")

    def versioned(self) -> dict[str, object]:
        # A setting added later is left out at its default, so the encoders trained before it keep
        # their versions.
        fields = self.model_dump(exclude={"max_seconds"})
        if not self.hard_negatives:
            del fields["hard_negatives"]
        return fields


class EncoderCard(BaseModel):
    """Provenance and figures of one trained encoder (``card.json``)."""

    version: str
    dataset_version: str
    tokenizer_version: str
    tokenizer_sha256: str
    encoder_sha256: str
    settings: EncoderSettings
    vocab_size: int
    train_documents: int
    pairs: dict[str, int] = Field(default_factory=dict, description="training pairs per kind")
    steps: int = 0
    final_loss: float = 0.0
    training_seconds: float = 0.0
    torch_version: str = ""


def encoder_version(settings: EncoderSettings, dataset_version: str, tokenizer_version: str) -> str:
    """Content-addressed name: the same data, tokenizer and settings give the same version.

    >>> encoder_version(EncoderSettings(), "ds-1", "tok-1").startswith("enc-")
    True
    """
    payload = json.dumps(
        {"settings": settings.versioned(), "dataset": dataset_version, "tokenizer": tokenizer_version},
        sort_keys=True,
    )
    return "enc-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def passage_text(title: str, heading_path: Sequence[str], text: str) -> str:
    """What a passage is encoded from: its title and headings, then its text (both training and index)."""
    headings = " > ".join(h for h in heading_path if h != title)
    return f"{title}\n{headings}\n{text}" if headings else f"{title}\n{text}"


class TextEncoder:
    """Encode texts into unit vectors with a trained encoder (thread-safe: read-only arrays).

    Examples
    --------
    >>> enc = TextEncoder(_ToyTokenizer(), np.eye(4, dtype=np.float32), np.zeros(4, dtype=np.float32))
    >>> enc.encode(["ab", "b"]).astype(float).round(3).tolist()
    [[0.707, 0.707, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        embeddings: FloatArray,
        weights: FloatArray,
        *,
        max_tokens: int = 256,
        lowercase: bool = True,
        card: EncoderCard | None = None,
    ) -> None:
        if embeddings.ndim != 2 or weights.shape != (embeddings.shape[0],):
            raise EncoderArtifactError(f"embeddings {embeddings.shape} and weights {weights.shape} do not match")
        self.tokenizer = tokenizer
        # Fold the per-piece weight into the table once: encoding is then a plain sum.
        self._table: FloatArray = (embeddings * _softplus(weights)[:, None]).astype(np.float32)
        self.dim = int(embeddings.shape[1])
        self.max_tokens = max_tokens
        self.lowercase = lowercase
        self.card = card

    @property
    def version(self) -> str:
        return self.card.version if self.card is not None else "unversioned"

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        prepared = [t.lower() if self.lowercase else t for t in texts]
        # Characters beyond what max_tokens pieces can cover are not worth tokenizing.
        cap = self.max_tokens * 16
        return [ids[: self.max_tokens] for ids in self.tokenizer.encode([t[:cap] for t in prepared])]

    def encode(self, texts: Sequence[str]) -> FloatArray:
        """Unit vectors (``len(texts)`` x ``dim``); a text with no pieces encodes to zeros."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self.token_ids(texts)
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((t for i in ids for t in i), dtype=np.int64, count=int(lengths.sum()))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        nonempty = lengths > 0
        if flat.size:
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[nonempty]
            out[nonempty] = np.add.reduceat(self._table[flat], starts, axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    # -- artefacts -------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: Path) -> TextEncoder:
        """Load ``encoder.npz``, ``tokenizer.model`` and ``card.json``, checking the card's sha256s.

        Raises
        ------
        EncoderArtifactError
            A file is missing or does not match the card (a model not traceable to its job).
        """
        from docllm.tokenizer.encode import SentencePieceTokenizer

        directory = Path(directory)
        paths = {name: directory / name for name in (ENCODER_FILE, TOKENIZER_FILE, CARD_FILE)}
        missing = [n for n, p in paths.items() if not p.exists()]
        if missing:
            raise EncoderArtifactError(f"{directory} lacks {', '.join(missing)}")
        card = EncoderCard.model_validate_json(paths[CARD_FILE].read_bytes())
        tok_bytes = paths[TOKENIZER_FILE].read_bytes()
        enc_bytes = paths[ENCODER_FILE].read_bytes()
        if hashlib.sha256(tok_bytes).hexdigest() != card.tokenizer_sha256:
            raise EncoderArtifactError(f"{paths[TOKENIZER_FILE]} does not match the card's tokenizer_sha256")
        if hashlib.sha256(enc_bytes).hexdigest() != card.encoder_sha256:
            raise EncoderArtifactError(f"{paths[ENCODER_FILE]} does not match the card's encoder_sha256")
        with np.load(paths[ENCODER_FILE]) as arrays:
            embeddings = arrays["embeddings"].astype(np.float32)
            weights = arrays["weights"].astype(np.float32)
        return cls(
            SentencePieceTokenizer(tok_bytes),
            embeddings,
            weights,
            max_tokens=card.settings.max_tokens,
            lowercase=card.settings.lowercase,
            card=card,
        )


def write_encoder_arrays(path: Path, embeddings: FloatArray, weights: FloatArray) -> str:
    """Write ``encoder.npz`` (uncompressed, deterministic bytes) and return its sha256."""
    with path.open("wb") as fh:
        np.savez(fh, embeddings=embeddings.astype(np.float32), weights=weights.astype(np.float32))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _softplus(x: FloatArray) -> FloatArray:
    return np.logaddexp(0.0, x).astype(np.float32)


class Tokenizer(Protocol):
    """What :class:`TextEncoder` needs of a tokenizer (``SentencePieceTokenizer`` has it)."""

    def encode(self, texts: list[str]) -> list[list[int]]: ...


class _ToyTokenizer:
    """Doctest stand-in: one id per letter a–d."""

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [[ord(c) - ord("a") for c in t if c in "abcd"] for t in texts]


class VectorStore:
    """Unit vectors of live slots, searched by brute-force dot product (exact k-NN).

    At 24k chunks x 256 dims a query is one 6 M multiply-add matrix-vector product, about a
    millisecond; an approximate index (HNSW) is what the OpenSearch path uses instead.

    Examples
    --------
    >>> store = VectorStore(2)
    >>> store.add([3, 5], np.array([[1, 0], [0, 1]], dtype=np.float32), groups=[0, 1])
    >>> store.top_k(np.array([0.6, 0.8], dtype=np.float32), k=2)
    [(5, 0.800000011920929), (3, 0.6000000238418579)]
    >>> store.remove(5)
    >>> store.top_k(np.array([0.6, 0.8], dtype=np.float32), k=2, group=1)
    []
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._rows: dict[int, int] = {}
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._slots = np.zeros(0, dtype=np.int64)
        self._groups = np.zeros(0, dtype=np.int32)
        self._alive = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, slots: Sequence[int], vectors: FloatArray, *, groups: Sequence[int]) -> None:
        if len(slots) == 0:
            return
        start = len(self._slots)
        self._vectors = np.concatenate([self._vectors, vectors.astype(np.float32)])
        self._slots = np.concatenate([self._slots, np.asarray(slots, dtype=np.int64)])
        self._groups = np.concatenate([self._groups, np.asarray(groups, dtype=np.int32)])
        self._alive = np.concatenate([self._alive, np.ones(len(slots), dtype=bool)])
        for i, slot in enumerate(slots):
            old = self._rows.get(slot)
            if old is not None:
                self._alive[old] = False
            self._rows[slot] = start + i

    def remove(self, slot: int) -> None:
        row = self._rows.pop(slot, None)
        if row is not None:
            self._alive[row] = False

    def top_k(self, query: FloatArray, *, k: int, group: int | None = None) -> list[tuple[int, float]]:
        """Best ``k`` live slots by cosine similarity, ties to the lower slot."""
        if k <= 0 or not self._rows or not query.any():  # a query with no known piece has no neighbours
            return []
        # einsum, not BLAS matmul: a multithreaded BLAS on a shared 2-core box measured 12 ms against 1.3 ms.
        scores = np.einsum("ij,j->i", self._vectors, query.astype(np.float32))
        mask = self._alive if group is None else self._alive & (self._groups == group)
        candidates = np.flatnonzero(mask)
        if len(candidates) == 0:
            return []
        if len(candidates) > k:
            # Keep every candidate tied with the k-th best so the slot tie-break is exact.
            kth = -np.partition(-scores[candidates], k - 1)[k - 1]
            candidates = candidates[scores[candidates] >= kth]
        order = np.lexsort((self._slots[candidates], -scores[candidates]))[:k]
        return [(int(self._slots[candidates[i]]), float(scores[candidates[i]])) for i in order]
