"""A running local platform per test module and the CLI run in-process against it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from docllm.cli.main import main
from docllm.runtime.local import LocalRuntime
from tests.conftest import REPO

#: rich's own styling on a terminal; any other ESC in the output came from data.
SGR = re.compile(r"\x1b\[[0-9;]*m")
#: A log record of the runtime's handlers, which run in this process and log to stdout too.
LOG_RECORD = re.compile(r'^\{"level":"[A-Z]+",.*\}$')


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def shown(self) -> str:
        """stdout without rich's styling."""
        return SGR.sub("", self.out)


Cli = Callable[..., Result]


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(tmp_path_factory.mktemp("platform"), template=REPO / "template.yaml", port=0, auth=True)
    runtime.start()
    yield runtime
    runtime.stop()


@pytest.fixture
def cli(rt: LocalRuntime, capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(["--data-dir", str(rt.data_dir), *argv])
        captured = capsys.readouterr()
        out = "".join(ln for ln in captured.out.splitlines(keepends=True) if not LOG_RECORD.match(ln))
        assert "Traceback" not in out + captured.err, captured.err
        return Result(code, out, captured.err)

    return run


def words(tag: str, n: int = 60) -> str:
    """Enough distinct words that a document is kept (and is nobody's duplicate)."""
    return " ".join(f"{tag}w{i}" for i in range(n))
