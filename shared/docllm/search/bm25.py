"""In-memory BM25 scorer over integer slots, updated incrementally (pure, numpy only).

The embedded index keeps its documents in SQLite and this scorer in memory:
FTS5's own ``bm25()`` had to score every chunk matching any query term and
measured p50 45 ms / p99 88 ms on the awsdocs corpus, against a 20 ms goal
(``docs/retrieval.md``). Here a query costs a few vectorised numpy passes
over the postings of its terms.

Scoring is Lucene's BM25 (the variant bm25s calls ``lucene``)::

    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))
    score(d, q) = sum over t in q of idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

``tf`` is a *weighted* term frequency (a title word counts more than a body
word) and ``dl`` the chunk's length in terms. ``N``, ``df`` and ``avgdl`` are
computed from live slots at query time, so adding or deleting a chunk never
needs a rebuild. Deleted slots stay in the postings, masked, until
:meth:`BM25Scorer.dead_fraction` says a rebuild is worth it.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

K1 = 1.2
B = 0.75


class BM25Scorer:
    """Postings and lengths of live slots; :meth:`top_k` ranks them for a query.

    Not thread-safe: the owner serialises calls.

    Examples
    --------
    >>> s = BM25Scorer()
    >>> s.add(1, {"bucket": 2.0, "polici": 1.0}, length=3, group=0)
    >>> s.add(2, {"bucket": 1.0}, length=5, group=1)
    >>> [slot for slot, _ in s.top_k(["polici"], k=5)]
    [1]
    """

    def __init__(self, k1: float = K1, b: float = B) -> None:
        self.k1 = k1
        self.b = b
        self._slots: dict[str, array[int]] = {}
        self._tfs: dict[str, array[float]] = {}
        self._length = np.zeros(1024, dtype=np.float32)
        self._group = np.full(1024, -1, dtype=np.int32)
        self._alive = np.zeros(1024, dtype=bool)
        self._live = 0
        self._dead = 0
        self._total_length = 0.0

    @property
    def live(self) -> int:
        return self._live

    def dead_fraction(self) -> float:
        total = self._live + self._dead
        return self._dead / total if total else 0.0

    def _ensure(self, slot: int) -> None:
        if slot < len(self._alive):
            return
        size = max(slot + 1, 2 * len(self._alive))
        self._length = np.resize(self._length, size)
        self._alive = np.concatenate([self._alive, np.zeros(size - len(self._alive), dtype=bool)])
        self._group = np.concatenate([self._group, np.full(size - len(self._group), -1, dtype=np.int32)])

    def add(self, slot: int, term_weights: Mapping[str, float], *, length: int, group: int) -> None:
        """Index ``slot`` (never reused after :meth:`remove`) with its weighted term frequencies."""
        self._ensure(slot)
        if self._alive[slot]:
            raise ValueError(f"slot {slot} is already live")
        for term, tf in term_weights.items():
            slots = self._slots.get(term)
            if slots is None:
                slots = self._slots[term] = array("q")
                self._tfs[term] = array("f")
            slots.append(slot)
            self._tfs[term].append(tf)
        self._length[slot] = length
        self._group[slot] = group
        self._alive[slot] = True
        self._live += 1
        self._total_length += length

    def remove(self, slot: int) -> None:
        """Mask ``slot`` out; unknown or already removed slots are ignored."""
        if slot >= len(self._alive) or not self._alive[slot]:
            return
        self._alive[slot] = False
        self._live -= 1
        self._dead += 1
        self._total_length -= float(self._length[slot])

    def top_k(
        self,
        terms: list[str],
        *,
        k: int,
        group: int | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> list[tuple[int, float]]:
        """Best ``k`` live slots for ``terms`` (each counted once), optionally only of ``group``.

        ``weights`` (optional) multiplies each term's contribution (query-side weights, e.g.
        feedback terms); a term missing from it counts 1. Ties are broken by the lower slot, so
        results are deterministic.
        """
        if self._live == 0 or k <= 0:
            return []
        n = self._live
        avgdl = max(self._total_length / n, 1e-9)
        scores = np.zeros(len(self._alive), dtype=np.float64)
        norm = self.k1 * (1.0 - self.b + self.b * self._length / avgdl)
        for term in dict.fromkeys(terms):
            posting = self._slots.get(term)
            if posting is None:
                continue
            slots: npt.NDArray[np.int64] = np.array(posting, dtype=np.int64)
            tfs: npt.NDArray[np.float32] = np.array(self._tfs[term], dtype=np.float32)
            live = self._alive[slots]
            slots, tfs = slots[live], tfs[live]
            df = len(slots)
            if df == 0:
                continue
            idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
            if weights is not None:
                idf *= weights.get(term, 1.0)
            # A slot appears at most once per term, so fancy-index += is exact.
            scores[slots] += idf * tfs * (self.k1 + 1.0) / (tfs + norm[slots])
        if group is not None:
            scores[self._group != group] = 0.0
        candidates = np.flatnonzero(scores > 0.0)
        if len(candidates) == 0:
            return []
        if len(candidates) > k:
            # Keep every candidate tied with the k-th best so the slot tie-break is exact.
            kth = -np.partition(-scores[candidates], k - 1)[k - 1]
            candidates = candidates[scores[candidates] >= kth]
        order = np.lexsort((candidates, -scores[candidates]))[:k]
        return [(int(candidates[i]), float(scores[candidates[i]])) for i in order]
