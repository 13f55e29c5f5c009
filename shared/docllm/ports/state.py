"""Key-value state port: DynamoDB on AWS, SQLite locally.

Items are addressed by a partition key and a sort key, as in a single-table
DynamoDB design; values are JSON-compatible dicts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

Item = dict[str, Any]


class StateStore(ABC):
    @abstractmethod
    def get(self, pk: str, sk: str) -> Item | None: ...

    @abstractmethod
    def put(self, pk: str, sk: str, item: Item, *, if_absent: bool = False) -> None:
        """Write an item; with ``if_absent`` raise :class:`ConflictError` if it exists."""

    @abstractmethod
    def delete(self, pk: str, sk: str) -> None: ...

    @abstractmethod
    def query(self, pk: str, sk_prefix: str = "") -> Iterator[tuple[str, Item]]:
        """``(sk, item)`` pairs of one partition in sort-key order."""
