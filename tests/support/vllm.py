"""vLLM's CPU build as a reference server for the parity tests (``bench.serve.servers.vllm`` starts it).

vLLM lives in its tool environment (``scripts/vllm-setup.sh`` makes ``.tools/vllm``), never a product
dependency: a test that needs it skips, saying why, where it is absent. Its servers run in float32
with a fixed seed, so that greedy tokens compare exactly with ours.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest

from bench.serve.servers import vllm, vllm_available

#: A loaded 2-core machine can take several minutes to compile a model.
START_TIMEOUT_S = 600


def skip_without_vllm() -> None:
    if not vllm_available():
        pytest.skip("vLLM's CPU build is not installed in .tools/vllm (run scripts/vllm-setup.sh)")


@contextlib.contextmanager
def vllm_server(model_dir: Path, name: str, log: Path, *args: str) -> Iterator[str]:
    """``vllm serve model_dir`` as ``name`` (float32, seed 0, 256 tokens of context, ``args`` added);
    its URL once it answers. A server that does not start fails the test, naming ``log``."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(
                vllm(
                    model_dir,
                    name,
                    dtype="float32",
                    log=log,
                    timeout_s=START_TIMEOUT_S,
                    max_model_len=256,
                    args=["--seed", "0", *args],
                )
            )
        except (RuntimeError, TimeoutError) as e:
            pytest.fail(str(e))
        yield url


def get_json(url: str) -> Any:
    with urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: dict[str, Any]) -> Any:
    req = Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())
