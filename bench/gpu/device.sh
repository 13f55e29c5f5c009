#!/usr/bin/env bash
# The GPU run of issue 20 as one command on the H200 machine, from the repository root:
#
#   bash bench/gpu/device.sh [more bench.gpu flags, e.g. --only 'compile:*']
#
# with `.gpuwheels` carried (git-ignored; bench/gpu/README.md says how to fill it). The
# machine's image has torch 2.11 (CUDA 13), Triton and transformers but not pydantic and the three
# small packages it needs; those install from the carried wheels into /tmp/pydeps. Results land in
# $OUT (set by the device tool; /tmp/bench-gpu elsewhere): results.json, results.md and log.txt.
# BUDGET (seconds, default 330) bounds the benchmark itself; a hang ends it at BUDGET + 60.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/bench-gpu}
BUDGET=${BUDGET:-330}
mkdir -p "$OUT"
{
    echo "== machine"
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,power.limit \
        --format=csv || true
    nproc
    python3 -c 'import sys, torch, transformers
try:
    import triton
    tv = triton.__version__
except ImportError:
    tv = None
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| transformers", transformers.__version__, "| triton", tv, "|", gpu)'
    echo "== wheels"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
        --target /tmp/pydeps --find-links .gpuwheels \
        pydantic pydantic-core annotated-types typing-inspection typing-extensions || exit 1
    export PYTHONPATH="shared:/tmp/pydeps:."
    export PYTHONUNBUFFERED=1
    python3 -c 'import docllm.model.gpt, docllm.model.export, docllm.training.loop, docllm.serving.engine
print("docllm imports under this torch")' || exit 1
    echo "== bench.gpu (budget ${BUDGET} s)"
    python3 -m bench.gpu --out "$OUT" --budget-s "$BUDGET" "$@"
} 2>&1 | tee "$OUT/log.txt"
