from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # The CI machine is small and shared: one intra-op thread avoids oversubscription stalls.
    torch.set_num_threads(1)
