"""Reciprocal rank fusion of ranked lists (pure).

Cormack, Clarke & Büttcher 2009: ``score(d) = sum over lists of weight / (k + rank(d))``, ranks
from 1. It needs no score calibration between BM25 and cosine similarity, which is why the hybrid
search uses it rather than a weighted sum of normalised scores (the OpenSearch path does the same
with its ``score-ranker-processor``; see ``docs/search.md``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

#: The constant of the original paper; it damps the head of each list.
RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[tuple[int, float]]],
    *,
    weights: Sequence[float] | None = None,
    k: int = RRF_K,
    limit: int | None = None,
) -> list[tuple[int, float]]:
    """Fuse ``(slot, score)`` lists (each best first) into one ``(slot, fused score)`` list.

    Ties are broken by the lower slot, so results are deterministic.

    Examples
    --------
    >>> bm25 = [(1, 9.0), (2, 5.0)]
    >>> dense = [(2, 0.9), (3, 0.8)]
    >>> [slot for slot, _ in reciprocal_rank_fusion([bm25, dense])]
    [2, 1, 3]
    >>> [slot for slot, _ in reciprocal_rank_fusion([bm25, dense], weights=[1.0, 0.0])]
    [1, 2, 3]
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    fused: dict[int, float] = defaultdict(float)
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, (slot, _) in enumerate(ranking, 1):
            fused[slot] += weight / (k + rank)
    out = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
    return out if limit is None else out[:limit]
