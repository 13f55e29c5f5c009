"""``docllm up`` on a port that is taken says so in one line and exits non-zero (issue 12)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_up_on_a_port_in_use_says_so_in_one_line_and_exits_non_zero(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "docllm.cli.main", "--data-dir", str(tmp_path), "up", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    (line,) = [ln for ln in output.splitlines() if "in use" in ln]
    assert f"127.0.0.1:{port}" in line and "--port 0" in line
    assert "Ctrl-C to stop" not in output  # no announcement of a server that never started
    assert not (tmp_path / "runtime.json").exists()  # nothing claims the data directory afterwards
