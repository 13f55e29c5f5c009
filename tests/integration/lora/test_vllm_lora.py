"""vLLM's CPU build serves the base with the LoRA adapter (``--enable-lora --lora-modules``), and its
greedy tokens under the adapter's name equal PEFT's base + adapter (issue 17, Deliver 3).

vLLM is the CPU build in its tool environment (``scripts/vllm-setup.sh`` makes ``.tools/vllm``), a
reference engine, never a product dependency: the test skips, saying why, where it is absent. With
LoRA enabled vLLM's CPU platform turns compilation off, so it starts faster than the parity test's
server; still ``slow``. Both sides run in float32 and prompts go as token ids (module docstring of
``tests/integration/serving/test_vllm_parity.py``: why identical ids, not a tolerance).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.integration.lora.conftest import LORA, LoraRun
from tests.integration.lora.test_lora_job import MAX_NEW_TOKENS, _base, _greedy, _peft, _prompt_ids
from tests.support.vllm import get_json, post_json, skip_without_vllm, vllm_server

pytestmark = pytest.mark.slow

BASE_NAME = "tiny-base-v1"
ADAPTER_NAME = "tiny-lora-1"


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM serving the base and the adapter of the session's LoRA run (which runs only if vLLM is here)."""
    skip_without_vllm()
    lora_run: LoraRun = request.getfixturevalue("lora_run")
    log = tmp_path_factory.mktemp("vllm-lora-log") / "vllm.log"
    lora = ["--enable-lora", "--max-lora-rank", str(LORA["r"]), "--max-loras", "1",
            "--lora-modules", f"{ADAPTER_NAME}={lora_run.model_dir / 'adapter'}"]  # fmt: skip
    with vllm_server(lora_run.base, BASE_NAME, log, *lora) as url:
        yield url


def _vllm_greedy(url: str, model: str, ids: list[int]) -> list[int]:
    body = {"model": model, "prompt": ids, "max_tokens": MAX_NEW_TOKENS, "temperature": 0.0,
            "return_token_ids": True, "ignore_eos": True}  # fmt: skip
    return list(post_json(url + "/v1/completions", body)["choices"][0]["token_ids"])


def test_vllm_lists_the_base_and_the_adapter(server: str) -> None:
    names = {c["id"] for c in get_json(server + "/v1/models")["data"]}
    assert names == {BASE_NAME, ADAPTER_NAME}


def test_vllm_greedy_tokens_under_the_adapter_equal_peft_base_plus_adapter(server: str, lora_run: LoraRun) -> None:
    peft_model, base = _peft(lora_run), _base(lora_run)
    changed = 0
    for ids in _prompt_ids(lora_run):
        with torch.no_grad():
            ours = _greedy(peft_model, ids)
        assert _vllm_greedy(server, ADAPTER_NAME, ids) == ours
        assert _vllm_greedy(server, BASE_NAME, ids) == _greedy(base, ids)
        changed += ours != _greedy(base, ids)
    assert changed  # the adapter is applied, not just loaded
