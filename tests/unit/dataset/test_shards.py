from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from docllm.dataset.exceptions import ShardFormatError
from docllm.dataset.shards import (
    LocalShardSource,
    PackedSequenceReader,
    S3ShardSource,
    dtype_for,
    load_index,
    write_shards,
)
from tests.unit.dataset.fakes import DictObjects

EOS = 2


def _docs(n: int = 20, seed: int = 0, vocab: int = 1000) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(4, vocab, size=int(rng.integers(1, 40))) for _ in range(n)]


def _stream(docs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.append(d, EOS) for d in docs])


def test_shards_hold_documents_end_to_end_with_eos_and_boundaries(tmp_path: Path) -> None:
    docs = _docs()
    index = write_shards(docs, tmp_path, vocab_size=1000, eos_id=EOS, shard_tokens=50)
    expected = _stream(docs)
    on_disk = np.concatenate([np.fromfile(tmp_path / s.name, dtype="<u2") for s in index.shards])
    assert np.array_equal(on_disk, expected)
    assert index.total_tokens == len(expected)
    assert all(s.tokens == 50 for s in index.shards[:-1])
    for doc, start in zip(docs, index.doc_starts, strict=True):
        assert np.array_equal(expected[start : start + len(doc)], doc)
        assert expected[start + len(doc)] == EOS
    assert index.doc_lengths().tolist() == [len(d) + 1 for d in docs]
    assert load_index(tmp_path) == index


@pytest.mark.parametrize(("vocab", "dtype"), [(32000, "uint16"), (65536, "uint16"), (70000, "uint32")])
def test_dtype_is_narrowest_holding_the_vocabulary(tmp_path: Path, vocab: int, dtype: str) -> None:
    assert dtype_for(vocab) == dtype
    index = write_shards([[vocab - 1, 5]], tmp_path, vocab_size=vocab, eos_id=EOS)
    assert index.dtype == dtype
    stored = np.fromfile(tmp_path / index.shards[0].name, dtype=np.dtype(dtype).newbyteorder("<"))
    assert stored.tolist() == [vocab - 1, 5, EOS]


def test_id_outside_vocabulary_is_rejected_not_wrapped(tmp_path: Path) -> None:
    with pytest.raises(ShardFormatError):
        write_shards([[1, 70000]], tmp_path, vocab_size=65536, eos_id=EOS)


def test_reader_windows_are_block_plus_one_slices_of_the_stream(tmp_path: Path) -> None:
    docs = _docs(30)
    write_shards(docs, tmp_path, vocab_size=1000, eos_id=EOS, shard_tokens=37)
    stream = _stream(docs)
    reader = PackedSequenceReader(tmp_path, block_size=16, shuffle=False)
    assert len(reader) == (len(stream) - 1) // 16
    it = iter(reader)
    for i in range(len(reader)):
        a = next(it)
        assert a.dtype == np.int64 and a.shape == (17,)
        assert np.array_equal(a, stream[i * 16 : i * 16 + 17])


def test_shuffled_epoch_is_a_permutation_and_deterministic(tmp_path: Path) -> None:
    write_shards(_docs(30), tmp_path, vocab_size=1000, eos_id=EOS, shard_tokens=64)
    r1 = PackedSequenceReader(tmp_path, block_size=8, seed=3)
    r2 = PackedSequenceReader(tmp_path, block_size=8, seed=3)
    plain = PackedSequenceReader(tmp_path, block_size=8, shuffle=False)
    n = len(r1)
    a = [x.tobytes() for x in islice(r1, n)]
    b = [x.tobytes() for x in islice(r2, n)]
    c = [x.tobytes() for x in islice(plain, n)]
    assert a == b
    assert a != c and sorted(a) == sorted(c)
    # the next epoch uses another order
    second = [x.tobytes() for x in islice(r1, n)]
    assert r1.epoch == 1 and second != a and sorted(second) == sorted(a)


def test_ranks_see_disjoint_equal_share_of_windows(tmp_path: Path) -> None:
    write_shards(_docs(40), tmp_path, vocab_size=1000, eos_id=EOS, shard_tokens=64)
    readers = [PackedSequenceReader(tmp_path, block_size=8, seed=1, rank=r, world_size=3) for r in range(3)]
    lengths = {len(r) for r in readers}
    assert len(lengths) == 1
    n = lengths.pop()
    orders = [set(r._rank_order(0).tolist()) for r in readers]
    assert all(len(o) == n for o in orders)
    assert not (orders[0] & orders[1]) and not (orders[1] & orders[2]) and not (orders[0] & orders[2])


def test_resume_from_state_continues_exactly(tmp_path: Path) -> None:
    write_shards(_docs(30), tmp_path, vocab_size=1000, eos_id=EOS, shard_tokens=64)
    reader = PackedSequenceReader(tmp_path, block_size=8, seed=7)
    n = len(reader)
    it = iter(reader)
    for _ in range(n + 3):  # into the second epoch
        next(it)
    saved = reader.state_dict()
    expected = [next(it) for _ in range(5)]
    resumed = PackedSequenceReader(tmp_path, block_size=8, seed=7)
    resumed.load_state_dict(saved)
    got = [x for x in islice(resumed, 5)]
    assert saved["epoch"] == 1 and saved["position"] == 3
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def test_state_from_another_layout_is_refused(tmp_path: Path) -> None:
    write_shards(_docs(30), tmp_path, vocab_size=1000, eos_id=EOS)
    state = PackedSequenceReader(tmp_path, block_size=8, seed=1).state_dict()
    with pytest.raises(ValueError):
        PackedSequenceReader(tmp_path, block_size=8, seed=2).load_state_dict(state)


def test_too_few_tokens_for_a_window_per_rank_is_an_error(tmp_path: Path) -> None:
    write_shards([[5, 6]], tmp_path, vocab_size=1000, eos_id=EOS)
    with pytest.raises(ShardFormatError):
        PackedSequenceReader(tmp_path, block_size=8)


def test_parts_written_by_several_hosts_read_as_one_stream(tmp_path: Path) -> None:
    a, b = _docs(10, seed=1), _docs(10, seed=2)
    write_shards(a, tmp_path / "part-000", vocab_size=1000, eos_id=EOS, shard_tokens=30)
    write_shards(b, tmp_path / "part-001", vocab_size=1000, eos_id=EOS, shard_tokens=30)
    index = LocalShardSource(tmp_path).index()
    assert index.documents == 20
    assert index.shards[0].name.startswith("part-000/")
    reader = PackedSequenceReader(tmp_path, block_size=4, shuffle=False)
    stream = np.concatenate([_stream(a), _stream(b)])
    got = np.concatenate([x[:-1] for x in islice(reader, len(reader))])
    assert np.array_equal(got, stream[: len(got)])


def test_object_store_source_reads_same_windows_by_range(tmp_path: Path) -> None:
    docs = _docs(25)
    write_shards(docs, tmp_path, vocab_size=1000, eos_id=EOS, shard_tokens=40)
    objects = DictObjects()
    for p in tmp_path.iterdir():
        objects.put("art", f"shards/ds/tok/train/{p.name}", p.read_bytes())
    remote = PackedSequenceReader(S3ShardSource(objects, "s3://art/shards/ds/tok/train"), block_size=8, seed=5)
    local = PackedSequenceReader(tmp_path, block_size=8, seed=5)
    for x, y in zip(islice(remote, len(local)), islice(local, len(local)), strict=True):
        assert np.array_equal(x, y)
    assert objects.range_calls >= len(local)
