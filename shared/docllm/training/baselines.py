"""Reference losses a trained model must beat (numpy only)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import numpy as np


def unigram_cross_entropy(
    train: Iterable[np.ndarray], val: Iterable[np.ndarray], vocab_size: int, *, max_sequences: int = 2000
) -> float:
    """Cross-entropy (nats/token) on ``val`` of token frequencies counted on ``train`` (add-one smoothed).

    A language model that does not beat this has learnt nothing beyond word frequencies.

    Example
    -------
    >>> import numpy as np
    >>> round(unigram_cross_entropy([np.array([0, 0, 1])], [np.array([0, 1])], 2), 3)
    0.693
    """
    counts = np.ones(vocab_size, dtype=np.float64)
    for seq in islice(train, max_sequences):
        counts += np.bincount(seq[1:], minlength=vocab_size)[:vocab_size]
    logp = np.log(counts / counts.sum())
    total, n = 0.0, 0
    for seq in islice(val, max_sequences):
        targets = seq[1:]
        total -= float(logp[targets].sum())
        n += len(targets)
    if n == 0:
        raise ValueError("validation stream is empty")
    return total / n
