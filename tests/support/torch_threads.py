"""torch with one intra-op thread for a while: the models of these tests (a few thousand weights, two
layers) gain nothing from a second thread and lose much on a loaded two-core machine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread inside, the previous count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
