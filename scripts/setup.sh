#!/usr/bin/env bash
# Create .venv with the pinned dependencies and docllm installed in editable mode.
# Idempotent: a second run only checks that the lock file has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Debian's chromium renders the evaluation report in a test (Playwright never downloads a browser).
# Installed where this runs as root with apt (CI, a fresh VM); elsewhere that test skips and says why.
if ! command -v chromium >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "installing chromium (Debian) for the report rendering test…" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
    || echo "chromium could not be installed; the report rendering test will skip" >&2
fi
stamp=.venv/.lock-sha256
want=$(sha256sum requirements/lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
echo "setting up .venv (pinned dependencies from requirements/lock.txt; torch==2.13.0 CPU)…" >&2
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and alone: the pinned CPU wheel, so nothing else can pull the CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -r requirements/lock.txt
.venv/bin/python -m pip install -q --no-deps -e .
echo "$want" > "$stamp"
