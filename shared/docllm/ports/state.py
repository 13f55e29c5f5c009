"""Key-value state port: DynamoDB on AWS, SQLite locally.

Items are addressed by a partition key and a sort key, as in a single-table
DynamoDB design; values are JSON-compatible dicts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Item = dict[str, Any]


@dataclass(frozen=True)
class Put:
    """One write of a :meth:`StateStore.transact` call."""

    pk: str
    sk: str
    item: Item = field(default_factory=dict)
    if_absent: bool = False


@dataclass(frozen=True)
class Delete:
    """One delete of a :meth:`StateStore.transact` call (deleting nothing is fine)."""

    pk: str
    sk: str


Write = Put | Delete

#: DynamoDB's TransactWriteItems limit; the local store keeps the same one so nothing
#: that works locally fails on AWS.
MAX_TRANSACT_ITEMS = 100


class StateStore(ABC):
    @abstractmethod
    def get(self, pk: str, sk: str) -> Item | None: ...

    @abstractmethod
    def put(self, pk: str, sk: str, item: Item, *, if_absent: bool = False) -> None:
        """Write an item; with ``if_absent`` raise :class:`ConflictError` if it exists."""

    @abstractmethod
    def delete(self, pk: str, sk: str) -> None: ...

    @abstractmethod
    def transact(self, writes: Sequence[Write]) -> None:
        """All of ``writes`` or none of them (at most :data:`MAX_TRANSACT_ITEMS`, on distinct keys).

        Raises :class:`ConflictError` (and writes nothing) when a ``Put(if_absent=True)`` finds its item.
        The transactional outbox (``service_layer/outbox.py``) is built on this.
        """

    @abstractmethod
    def query(self, pk: str, sk_prefix: str = "") -> Iterator[tuple[str, Item]]:
        """``(sk, item)`` pairs of one partition in sort-key order."""

    def query_page(
        self,
        pk: str,
        sk_prefix: str = "",
        *,
        after: str | None = None,
        limit: int = 50,
        where: Mapping[str, str] | None = None,
        descending: bool = False,
    ) -> list[tuple[str, Item]]:
        """One page of :meth:`query`: at most ``limit`` pairs whose sort key comes after ``after`` (before
        it when ``descending``), keeping only items whose top-level fields equal ``where``'s values.

        For pages a person reads (the dashboard): the next page starts after the last key of this one, so
        no page depends on the partition's size. This default walks :meth:`query` and stops at the page's
        end (all of it when ``descending``); the SQLite adapter answers from its index with ``LIMIT``.
        """
        wanted = dict(where or {})
        found: list[tuple[str, Item]] = []
        rows = self.query(pk, sk_prefix)
        if descending:
            rows = iter(sorted(rows, key=lambda r: r[0], reverse=True))
        for sk, item in rows:
            if after is not None and (sk >= after if descending else sk <= after):
                continue
            if any(str(item.get(k)) != v for k, v in wanted.items()):
                continue
            found.append((sk, item))
            if len(found) >= limit:
                break
        return found

    def count_by(self, pk: str, fields: Sequence[str]) -> dict[tuple[str, ...], int]:
        """How many items of partition ``pk`` share each combination of ``fields``' values (as text).

        An aggregate, not a listing: the SQLite adapter counts inside the database. This default reads
        the partition, as DynamoDB would have to (a counter table is the AWS answer when it matters).
        """
        counts: dict[tuple[str, ...], int] = {}
        for _, item in self.query(pk):
            key = tuple(str(item.get(f)) for f in fields)
            counts[key] = counts.get(key, 0) + 1
        return counts


def check_transact(writes: Sequence[Write]) -> None:
    """The limits every adapter enforces alike (DynamoDB's): item count and one write per key."""
    if len(writes) > MAX_TRANSACT_ITEMS:
        raise ValueError(f"a transaction holds at most {MAX_TRANSACT_ITEMS} writes, got {len(writes)}")
    keys = [(w.pk, w.sk) for w in writes]
    if len(set(keys)) != len(keys):
        raise ValueError("a transaction may write each key once")
