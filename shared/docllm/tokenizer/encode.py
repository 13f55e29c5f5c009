"""Encoding with a trained tokenizer, and grouping chunk ids into document token streams.

A document's stream is its chunks' ids in order, joined by the ids of a blank
line (``"\\n\\n"``); :func:`docllm.dataset.shards.write_shards` adds EOS after it.
Chunks are encoded in batches spanning many documents, because one
SentencePiece call per chunk costs more in call overhead than in encoding.
Within a batch each distinct line is encoded once: newline is an atomic
user-defined symbol (no piece crosses it), so a text's ids are its lines' ids
joined by the newline id, and documentation repeats about half its lines
(blank lines, fences, boilerplate sentences).

Example::

    tok = SentencePieceTokenizer.from_file(Path("tokenizer.model"))
    for doc in encode_documents(tok, read_split_file(Path("train.jsonl"))):
        print(doc.doc_key, len(doc.ids))
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from docllm.dataset.shards import dtype_for
from docllm.dataset.versions import SplitRecord

CHUNK_SEPARATOR = "\n\n"


class SentencePieceTokenizer:
    """A thin typed wrapper over ``sentencepiece.SentencePieceProcessor``."""

    def __init__(self, model_proto: bytes, *, num_threads: int = 1) -> None:
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.num_threads = num_threads
        self.vocab_size: int = self._sp.get_piece_size()
        self.eos_id: int = self._sp.eos_id()
        self.bos_id: int = self._sp.bos_id()
        self.pad_id: int = self._sp.pad_id()
        self.unk_id: int = self._sp.unk_id()
        # Line-by-line encoding is exact only when newline is one piece and no other piece holds one.
        nl = self._sp.piece_to_id("\n")
        self.newline_id: int | None = (
            nl
            if self._sp.id_to_piece(nl) == "\n"
            and not any("\n" in self._sp.id_to_piece(i) for i in range(self.vocab_size) if i != nl)
            else None
        )

    @classmethod
    def from_file(cls, path: Path, *, num_threads: int = 1) -> SentencePieceTokenizer:
        return cls(path.read_bytes(), num_threads=num_threads)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text (no BOS/EOS)."""
        result: list[list[int]] = self._sp.encode(texts, num_threads=self.num_threads)
        return result

    def encode_by_line(self, texts: list[str]) -> list[list[int]]:
        """Same ids as :meth:`encode`; each distinct line across ``texts`` is encoded once."""
        if self.newline_id is None:
            return self.encode(texts)
        split = [t.split("\n") for t in texts]
        index: dict[str, int] = {}
        for lines in split:
            for line in lines:
                index.setdefault(line, len(index))
        encoded = self.encode(list(index))
        nl = self.newline_id
        out: list[list[int]] = []
        for lines in split:
            ids = list(encoded[index[lines[0]]])
            for line in lines[1:]:
                ids.append(nl)
                ids.extend(encoded[index[line]])
            out.append(ids)
        return out

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        text: str = self._sp.decode([int(i) for i in ids])
        return text

    def id_to_piece(self, i: int) -> str:
        piece: str = self._sp.id_to_piece(i)
        return piece


@dataclass(frozen=True)
class EncodedDocument:
    doc_key: str
    ids: np.ndarray  # (tokens,) in the shard dtype, without EOS
    chunk_tokens: list[tuple[str, int]]  # (chunk_id, tokens) in order, separators not counted


def encode_documents(
    tokenizer: SentencePieceTokenizer,
    records: Iterable[SplitRecord],
    *,
    batch_chunks: int = 1024,
) -> Iterator[EncodedDocument]:
    """Encode split records (grouped by document, in order) into one id array per document."""
    dtype = np.dtype(dtype_for(tokenizer.vocab_size))
    sep = tokenizer.encode([CHUNK_SEPARATOR])[0]
    docs: list[tuple[str, list[SplitRecord]]] = []
    pending = 0
    for doc_key, group in itertools.groupby(records, key=lambda r: r.doc_key):
        chunks = list(group)
        docs.append((doc_key, chunks))
        pending += len(chunks)
        if pending >= batch_chunks:
            yield from _encode_batch(tokenizer, docs, sep, dtype)
            docs, pending = [], 0
    if docs:
        yield from _encode_batch(tokenizer, docs, sep, dtype)


def _encode_batch(
    tokenizer: SentencePieceTokenizer,
    docs: list[tuple[str, list[SplitRecord]]],
    sep: list[int],
    dtype: np.dtype,
) -> Iterator[EncodedDocument]:
    encoded = tokenizer.encode_by_line([r.text for _, chunks in docs for r in chunks])
    k = 0
    for doc_key, chunks in docs:
        parts = encoded[k : k + len(chunks)]
        k += len(chunks)
        total = sum(map(len, parts)) + len(sep) * (len(parts) - 1)
        joined = itertools.chain.from_iterable(
            itertools.chain.from_iterable((sep, p) if i else (p,) for i, p in enumerate(parts))
        )
        ids = np.fromiter(joined, dtype=dtype, count=total)
        yield EncodedDocument(
            doc_key=doc_key,
            ids=ids,
            chunk_tokens=[(r.chunk_id, len(p)) for r, p in zip(chunks, parts, strict=True)],
        )
