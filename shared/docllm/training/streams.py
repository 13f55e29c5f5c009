"""An in-memory :class:`docllm.training.loop.TokenStream` over one token array (tests, benchmarks, demos).

It follows the shard reader's contract: sequences of ``block_size + 1`` tokens
(consecutive windows overlap by one token so every token is a target once),
split round-robin between ranks, reshuffled each epoch from ``seed``, infinite,
with a ``state_dict`` that names the next sequence to yield.

Example
-------
>>> import numpy as np
>>> s = ArrayTokenStream(np.arange(100), block_size=8, shuffle=False)
>>> len(s), next(iter(s)).tolist()
(12, [0, 1, 2, 3, 4, 5, 6, 7, 8])
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class ArrayTokenStream:
    def __init__(
        self,
        tokens: np.ndarray,
        *,
        block_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.block_size = block_size
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        total = (len(self.tokens) - 1) // block_size
        self._per_rank = total // world_size  # equal counts keep ranks in step
        if self._per_rank < 1:
            raise ValueError(f"{len(self.tokens)} tokens make no sequence of {block_size + 1} per rank")
        self.epoch = 0
        self.index = 0  # next position within the epoch's order

    def __len__(self) -> int:
        return self._per_rank

    def _order(self, epoch: int) -> np.ndarray:
        all_ids = np.arange(self._per_rank * self.world_size)
        if self.shuffle:
            all_ids = np.random.default_rng((self.seed, epoch)).permutation(all_ids)
        return all_ids[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            order = self._order(self.epoch)
            while self.index < len(order):
                start = int(order[self.index]) * self.block_size
                self.index += 1
                yield self.tokens[start : start + self.block_size + 1]
            self.epoch += 1
            self.index = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
