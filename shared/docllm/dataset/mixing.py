"""Answer-tuning examples mixed into the language-model stream of the training split.

The training loop reads packed windows (:class:`docllm.dataset.shards.PackedSequenceReader`):
window ``i`` is tokens ``i * block_size`` to ``(i + 1) * block_size``. An example placed at a
multiple of ``block_size`` and no longer than ``block_size`` tokens (EOS included) therefore lies
whole in one window, starting at its first position, as a prompt does at serving time (no BOS:
the export's tokenizer adds none). So the mixer cuts the language-model text, not the examples:
before each example it emits exactly as many language-model tokens as keep the examples at
``share`` of the stream, rounded up to the next window start. A document cut there continues
after the example (one document, no EOS inside it); windows cut documents anyway.

``share`` is of tokens: after ``E`` example tokens and ``L`` language-model tokens, the next
example goes in once ``L >= E' * (1 - share) / share`` for ``E'`` the example tokens with it.
When the language-model text runs out, the examples left are not placed (counted in
:class:`MixStats`), so the share holds; the examples come in a hash order (the builder's), so
those left out are a uniform sample. The stream ends at a window boundary (EOS padding, less than
one window) so the next host's part, read after this one, stays aligned.

Example
-------
>>> import numpy as np
>>> stats = MixStats()
>>> pieces = list(mix_examples([np.arange(10, 40)], [np.array([7, 7, 7])], share=0.25, block_size=8,
...                            eos_id=2, stats=stats))
>>> sum(len(p.ids) + p.ends for p in pieces) % 8, stats.examples, stats.example_tokens
(0, 1, 4)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
from pydantic import BaseModel

from docllm.dataset.shards import StreamPiece


class MixStats(BaseModel):
    """What the mix holds (tokens include each document's and example's EOS)."""

    examples: int = 0
    example_tokens: int = 0
    lm_tokens: int = 0
    padding_tokens: int = 0
    too_long: int = 0
    unplaced: int = 0


def mix_examples(
    lm_docs: Iterable[np.ndarray],
    examples: Iterable[np.ndarray],
    *,
    share: float,
    block_size: int,
    eos_id: int,
    stats: MixStats,
) -> Iterator[StreamPiece]:
    """The training stream: language-model documents with examples at window starts (module docstring).

    ``stats`` is filled as the stream is consumed.
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    docs = iter(lm_docs)
    current: np.ndarray | None = None
    offset = 0  # ids of ``current`` already emitted
    pos = 0
    exhausted = False

    def take(n: int) -> Iterator[StreamPiece]:
        """Exactly ``n`` language-model tokens (fewer only when the text runs out)."""
        nonlocal current, offset, pos, exhausted
        while n > 0:
            if current is None:
                nxt = next(docs, None)
                if nxt is None:
                    exhausted = True
                    return
                current, offset = np.asarray(nxt), 0
            left = len(current) - offset
            if left + 1 <= n:
                yield StreamPiece(current[offset:], starts=offset == 0, ends=True)
                n -= left + 1
                pos += left + 1
                stats.lm_tokens += left + 1
                current = None
            else:
                yield StreamPiece(current[offset : offset + n], starts=offset == 0, ends=False)
                offset += n
                pos += n
                stats.lm_tokens += n
                n = 0

    for example in examples:
        size = len(example) + 1
        if size > block_size:
            stats.too_long += 1
            continue
        if exhausted:
            stats.unplaced += 1
            continue
        want = math.ceil((stats.example_tokens + size) * (1 - share) / share) - stats.lm_tokens
        need = max(0, want)
        need += -(pos + need) % block_size
        before = pos
        yield from take(need)
        if pos - before < need:
            stats.unplaced += 1
            continue
        yield StreamPiece(example)
        pos += size
        stats.examples += 1
        stats.example_tokens += size
    while not exhausted:
        yield from take(1 << 30)
    pad = -pos % block_size
    if pad:
        yield StreamPiece(np.full(pad, eos_id, dtype=np.int64), starts=False, ends=False)
        stats.padding_tokens += pad
