from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import torch_threads


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads.one_thread():
        yield
