"""Token shards: fixed-size binary files of token ids, and a streaming reader of packed sequences.

Format (``format_version`` 1) of one shard directory::

    shard-00000.bin   shard_tokens little-endian ids (uint16 when vocab_size <= 65536, else uint32)
    shard-00001.bin   ... the last shard holds the remainder
    index.json        :class:`ShardIndex`: dtype, counts, and where every document starts

Documents are laid end to end, each followed by ``eos_id``, so the token
stream of a split is one array cut into shards; a document may straddle two
shards. A split written by several hosts is a directory of ``part-NNN/`` shard
directories, read as their concatenation in part order.

:class:`PackedSequenceReader` cuts the stream into ``block_size + 1`` windows
(``x = a[:-1]``, ``y = a[1:]``; consecutive windows share one token), shuffles
window order per epoch from ``(seed, epoch)``, deals windows to ranks
round-robin so ranks are disjoint and equally long, and can resume exactly
from :meth:`~PackedSequenceReader.state_dict`.

Example::

    index = write_shards([[5, 6, 7], [8, 9]], Path("out"), vocab_size=32000, eos_id=2)
    reader = PackedSequenceReader(Path("out"), block_size=2, seed=0)
    a = next(iter(reader))          # (3,) int64
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from docllm.dataset.exceptions import ShardFormatError
from docllm.exceptions import NotFoundError
from docllm.ports.objects import ObjectStore, split_uri

INDEX_NAME = "index.json"
FORMAT_VERSION = 1
Dtype = Literal["uint16", "uint32"]


class ShardInfo(BaseModel):
    name: str = Field(description="file name relative to the shard root, e.g. shard-00000.bin")
    tokens: int = Field(ge=0)


class ShardIndex(BaseModel):
    """``index.json``: what the shards of one token stream hold."""

    format_version: Literal[1] = 1
    dtype: Dtype
    vocab_size: int = Field(gt=0)
    eos_id: int = Field(ge=0)
    shard_tokens: int = Field(gt=0, description="tokens per full shard")
    total_tokens: int = Field(ge=0)
    documents: int = Field(ge=0)
    doc_starts: list[int] = Field(
        default_factory=list, description="offset of each document's first token in the stream"
    )
    shards: list[ShardInfo] = Field(default_factory=list)

    def doc_lengths(self) -> np.ndarray:
        """Tokens of each document, its EOS included."""
        ends = np.append(np.asarray(self.doc_starts[1:], dtype=np.int64), self.total_tokens)
        return ends - np.asarray(self.doc_starts, dtype=np.int64)


def dtype_for(vocab_size: int) -> Dtype:
    """The narrowest id type that holds every id of a vocabulary.

    >>> dtype_for(32000), dtype_for(65536), dtype_for(65537)
    ('uint16', 'uint16', 'uint32')
    """
    return "uint16" if vocab_size <= 2**16 else "uint32"


class StreamPiece(NamedTuple):
    """A run of ids in a token stream: the whole of a document, or part of one.

    ``starts``: a document begins here (its offset goes into ``doc_starts``); ``ends``: the document
    ends here (EOS follows). A document cut in pieces (:mod:`docllm.dataset.mixing` cuts
    language-model text to place answer-tuning examples at window starts) is one start, one end.
    """

    ids: Sequence[int] | np.ndarray
    starts: bool = True
    ends: bool = True


def write_shards(
    token_docs: Iterable[Sequence[int] | np.ndarray],
    out_dir: Path,
    *,
    vocab_size: int,
    eos_id: int,
    shard_tokens: int = 2**24,
) -> ShardIndex:
    """Write documents' token ids as fixed-size shards plus ``index.json``.

    Parameters
    ----------
    token_docs
        One sequence of ids per document (lists or integer numpy arrays); streamed,
        never held all at once.
    out_dir
        Created if needed; ``shard-NNNNN.bin`` and ``index.json`` (written last).
    vocab_size, eos_id
        Ids must be below ``vocab_size``; ``eos_id`` follows every document.
    shard_tokens
        Tokens per shard (the last one holds the rest).

    Raises
    ------
    ShardFormatError
        An id is negative or not below ``vocab_size``.

    Example
    -------
    >>> import tempfile
    >>> idx = write_shards([[3, 4], [5]], Path(tempfile.mkdtemp()), vocab_size=10, eos_id=2, shard_tokens=4)
    >>> idx.total_tokens, [s.tokens for s in idx.shards], idx.doc_starts
    (5, [4, 1], [0, 3])
    """
    return write_pieces(
        (StreamPiece(doc) for doc in token_docs),
        out_dir,
        vocab_size=vocab_size,
        eos_id=eos_id,
        shard_tokens=shard_tokens,
    )


def write_pieces(
    pieces: Iterable[StreamPiece],
    out_dir: Path,
    *,
    vocab_size: int,
    eos_id: int,
    shard_tokens: int = 2**24,
) -> ShardIndex:
    """:func:`write_shards` for a stream given as :class:`StreamPiece` runs (EOS only where a piece ends
    its document). Same format: readers cannot tell the two apart.

    Example
    -------
    >>> import tempfile
    >>> idx = write_pieces([StreamPiece([3, 4], ends=False), StreamPiece([5], starts=False)],
    ...                    Path(tempfile.mkdtemp()), vocab_size=10, eos_id=2)
    >>> idx.total_tokens, idx.doc_starts
    (4, [0])
    """
    if not 0 <= eos_id < vocab_size:
        raise ShardFormatError(f"eos_id {eos_id} outside vocabulary of {vocab_size}")
    if shard_tokens <= 0:
        raise ShardFormatError(f"shard_tokens must be positive, got {shard_tokens}")
    dtype = dtype_for(vocab_size)
    np_dtype = np.dtype(dtype).newbyteorder("<")
    out_dir.mkdir(parents=True, exist_ok=True)
    eos = np.asarray([eos_id], dtype=np_dtype)
    shards: list[ShardInfo] = []
    doc_starts: list[int] = []
    total = 0
    fh: IO[bytes] | None = None
    room = 0  # tokens still free in the open shard

    def emit(arr: np.ndarray) -> None:
        nonlocal fh, room
        offset = 0
        while offset < len(arr):
            if room == 0:
                if fh is not None:
                    fh.close()
                name = f"shard-{len(shards):05d}.bin"
                fh = (out_dir / name).open("wb")
                shards.append(ShardInfo(name=name, tokens=0))
                room = shard_tokens
            take = min(room, len(arr) - offset)
            assert fh is not None
            fh.write(arr[offset : offset + take].tobytes())
            shards[-1].tokens += take
            room -= take
            offset += take

    try:
        for piece in pieces:
            ids = np.asarray(piece.ids)
            if ids.size:
                # Check before narrowing: a cast would silently wrap an out-of-range id.
                lo, hi = int(ids.min()), int(ids.max())
                if lo < 0 or hi >= vocab_size:
                    bad = hi if hi >= vocab_size else lo
                    raise ShardFormatError(f"token id {bad} outside [0, {vocab_size})")
            if piece.starts:
                doc_starts.append(total)
            emit(ids.astype(np_dtype, copy=False))
            total += int(ids.size)
            if piece.ends:
                emit(eos)
                total += 1
    finally:
        if fh is not None:
            fh.close()
    index = ShardIndex(
        dtype=dtype,
        vocab_size=vocab_size,
        eos_id=eos_id,
        shard_tokens=shard_tokens,
        total_tokens=total,
        documents=len(doc_starts),
        doc_starts=doc_starts,
        shards=shards,
    )
    (out_dir / INDEX_NAME).write_text(index.model_dump_json(), encoding="utf-8")
    return index


def merge_indexes(parts: Sequence[tuple[str, ShardIndex]]) -> ShardIndex:
    """One virtual index over shard directories read in order (``(prefix, index)`` pairs).

    Shard names become ``<prefix>/<name>`` and document offsets shift by the tokens before them.
    """
    if not parts:
        raise ShardFormatError("no shard index found")
    first = parts[0][1]
    shards: list[ShardInfo] = []
    starts: list[int] = []
    total = 0
    for prefix, idx in parts:
        if (idx.dtype, idx.vocab_size, idx.eos_id) != (first.dtype, first.vocab_size, first.eos_id):
            raise ShardFormatError(f"part {prefix!r} has a different dtype/vocab/eos than the first part")
        name_prefix = f"{prefix}/" if prefix else ""
        shards += [ShardInfo(name=name_prefix + s.name, tokens=s.tokens) for s in idx.shards]
        starts += [total + s for s in idx.doc_starts]
        total += idx.total_tokens
    return ShardIndex(
        dtype=first.dtype,
        vocab_size=first.vocab_size,
        eos_id=first.eos_id,
        shard_tokens=first.shard_tokens,
        total_tokens=total,
        documents=len(starts),
        doc_starts=starts,
        shards=shards,
    )


def _parse_index(raw: bytes | str, where: str) -> ShardIndex:
    try:
        return ShardIndex.model_validate_json(raw)
    except ValidationError as e:
        raise ShardFormatError(f"{where}: not a shard index of format {FORMAT_VERSION}: {e}") from e


class ShardSource(ABC):
    """Where shards are read from: a local directory or an object-store prefix."""

    @abstractmethod
    def index(self) -> ShardIndex:
        """The (merged) index of the token stream."""

    @abstractmethod
    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Tokens ``start`` (inclusive) to ``stop`` (exclusive) of shard ``name``, in the index dtype."""


class LocalShardSource(ShardSource):
    """Shards in a local directory (``index.json`` there, or ``part-*/index.json`` below it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: ShardIndex | None = None
        self._maps: dict[str, np.ndarray] = {}

    def index(self) -> ShardIndex:
        if self._index is None:
            single = self.root / INDEX_NAME
            if single.exists():
                self._index = _parse_index(single.read_bytes(), str(single))
            else:
                parts = sorted(p.parent for p in self.root.glob(f"part-*/{INDEX_NAME}"))
                self._index = merge_indexes(
                    [(p.name, _parse_index((p / INDEX_NAME).read_bytes(), str(p))) for p in parts]
                )
        return self._index

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        arr = self._maps.get(name)
        if arr is None:
            # memmap: the OS page cache does the buffering, nothing is read twice.
            dtype = np.dtype(self.index().dtype).newbyteorder("<")
            arr = np.memmap(self.root / name, dtype=dtype, mode="r")
            self._maps[name] = arr
        return np.asarray(arr[start:stop])


class S3ShardSource(ShardSource):
    """Shards under an ``s3://`` prefix, read with ranged GETs through the object-store port.

    Each window is one range request per shard it touches (about ``2 * block_size``
    bytes); use several data-loader workers to hide the latency.
    """

    def __init__(self, objects: ObjectStore, uri: str) -> None:
        self.objects = objects
        self.bucket, key = split_uri(uri)
        self.prefix = key if not key or key.endswith("/") else key + "/"
        self._index: ShardIndex | None = None

    def index(self) -> ShardIndex:
        if self._index is None:
            try:
                raw = self.objects.get(self.bucket, self.prefix + INDEX_NAME)
                self._index = _parse_index(raw, self.prefix + INDEX_NAME)
            except NotFoundError:
                parts = []
                for info in self.objects.list(self.bucket, self.prefix + "part-"):
                    rel = info.key[len(self.prefix) :]
                    if rel.count("/") == 1 and rel.endswith("/" + INDEX_NAME):
                        part = rel.split("/")[0]
                        parts.append((part, _parse_index(self.objects.get(self.bucket, info.key), info.key)))
                self._index = merge_indexes(sorted(parts, key=lambda p: p[0]))
        return self._index

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        dtype = np.dtype(self.index().dtype).newbyteorder("<")
        if stop <= start:
            return np.empty(0, dtype=dtype)
        size = dtype.itemsize
        raw = self.objects.get_range(self.bucket, self.prefix + name, start * size, stop * size - 1)
        if len(raw) != (stop - start) * size:
            raise ShardFormatError(f"{name}: short read ({len(raw)} bytes for tokens {start}:{stop})")
        return np.frombuffer(raw, dtype=dtype)


class PackedSequenceReader:
    """Packed ``block_size + 1`` windows of a token stream, shuffled per epoch, split across ranks.

    Parameters
    ----------
    source
        A shard directory (local) or a :class:`ShardSource`.
    block_size
        Model context length; each item has ``block_size + 1`` tokens.
    seed
        Shuffling seed; epoch ``e`` uses the permutation drawn from ``(seed, e)``.
    rank, world_size
        Data-parallel position: rank ``r`` takes windows ``r, r + world, ...`` of the
        epoch order, and every rank gets ``len(self)`` of them (the rest are dropped).
    shuffle
        False: stream order (evaluation).

    Example
    -------
    >>> reader = PackedSequenceReader(Path("shards/train"), block_size=1024)  # doctest: +SKIP
    >>> a = next(iter(reader)); x, y = a[:-1], a[1:]                           # doctest: +SKIP
    >>> saved = reader.state_dict()                                             # doctest: +SKIP
    """

    def __init__(
        self,
        source: Path | ShardSource,
        *,
        block_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, got {block_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.source = LocalShardSource(source) if isinstance(source, Path) else source
        self.block_size = block_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        idx = self.source.index()
        self._names = [s.name for s in idx.shards]
        self._ends = np.cumsum([s.tokens for s in idx.shards], dtype=np.int64)
        self._windows = max(0, (idx.total_tokens - 1) // block_size)
        self._per_rank = self._windows // world_size
        if self._per_rank == 0:
            raise ShardFormatError(
                f"{idx.total_tokens} tokens give no window of {block_size + 1} for each of {world_size} ranks"
            )
        self.epoch = 0
        self.position = 0
        self._order_epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return self._per_rank

    def _rank_order(self, epoch: int) -> np.ndarray:
        if epoch != self._order_epoch:
            if self.shuffle:
                order = np.random.default_rng([self.seed, epoch]).permutation(self._windows)
            else:
                order = np.arange(self._windows, dtype=np.int64)
            self._order = order[self.rank : self._per_rank * self.world_size : self.world_size]
            self._order_epoch = epoch
        return self._order

    def window(self, i: int) -> np.ndarray:
        """Window ``i`` of the stream: tokens ``i * block_size`` to ``(i + 1) * block_size`` inclusive."""
        start = i * self.block_size
        return self._read_range(start, start + self.block_size + 1)

    def _read_range(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        k = int(np.searchsorted(self._ends, start, side="right"))
        pos = start
        while pos < stop:
            shard_start = int(self._ends[k - 1]) if k else 0
            end = min(stop, int(self._ends[k]))
            pieces.append(self.source.read(self._names[k], pos - shard_start, end - shard_start))
            pos = end
            k += 1
        return np.concatenate(pieces).astype(np.int64)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            order = self._rank_order(self.epoch)
            while self.position < len(order):
                item = self.window(int(order[self.position]))
                # Advance before yielding: a state saved after consuming an item resumes after it.
                self.position += 1
                yield item
            self.epoch += 1
            self.position = 0

    def state_dict(self) -> dict[str, int]:
        """Where the reader is: enough to resume exactly with :meth:`load_state_dict`."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "block_size": self.block_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from :meth:`state_dict`; refuses a state from a different seed/layout."""
        for key in ("seed", "rank", "world_size", "block_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"state has {key}={state[key]}, reader has {getattr(self, key)}")
        position = int(state["position"])
        if not 0 <= position <= self._per_rank:
            raise ValueError(f"position {position} outside 0..{self._per_rank}")
        self.epoch = int(state["epoch"])
        self.position = position


def load_index(path: Path) -> ShardIndex:
    """Read a local ``index.json`` (or the merged parts below a directory)."""
    return LocalShardSource(path).index() if path.is_dir() else _parse_index(path.read_bytes(), str(path))


def shard_dir_stats(index: ShardIndex) -> dict[str, int]:
    """Counts for reports: tokens, documents, shards, bytes."""
    itemsize = np.dtype(index.dtype).itemsize
    return {
        "tokens": index.total_tokens,
        "documents": index.documents,
        "shards": len(index.shards),
        "bytes": index.total_tokens * itemsize,
    }


__all__ = [
    "LocalShardSource",
    "PackedSequenceReader",
    "S3ShardSource",
    "ShardFormatError",
    "ShardIndex",
    "ShardInfo",
    "ShardSource",
    "StreamPiece",
    "dtype_for",
    "load_index",
    "merge_indexes",
    "write_pieces",
    "write_shards",
]
