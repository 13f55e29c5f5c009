#!/usr/bin/env bash
# Offline validation of the SAM application: `sam validate --lint`, a check of the
# SAM transform's output, then `sam build`.
#
# Usage (from anywhere):   scripts/sam-check.sh            # validate + transform check + build
#                          SAM_CHECK_SKIP_BUILD=1 scripts/sam-check.sh   # no build
#
# The SAM CLI lives in its own virtual environment (.tools/sam) because it pins
# its own boto3/botocore, which must not leak into the project venv that the
# code and tests run against. No AWS credentials and no Docker are needed:
# validate runs the SAM translator + cfn-lint locally, and the build uses the
# python3.12 build method on the host. The tool venv is made with python3.12, so
# its bin/ doubles as the python3.12 that `sam build` looks for on PATH.
set -euo pipefail

SAM_VERSION="1.170.0"
# The Lambda runtime of every function and of the layer's BuildMethod (template.yaml).
PY_VERSION="3.12"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOL_VENV="${ROOT}/.tools/sam"
SAM="${TOOL_VENV}/bin/sam"
# validate needs a region to build ARNs; nothing is called in it.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-eu-west-1}"
export AWS_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION}}"
# No telemetry calls from CI.
export SAM_CLI_TELEMETRY=0

# A python3.12 that runs: pyenv installs a `python3.12` shim even where 3.12 is not
# the selected version (and the shim then fails), so every candidate is tried.
find_python() {
  local root="${PYENV_ROOT:-${HOME}/.pyenv}" c
  local candidates=("python${PY_VERSION}")
  for c in "${root}"/versions/"${PY_VERSION}".*/bin/python"${PY_VERSION}"; do candidates+=("${c}"); done
  for c in "${candidates[@]}"; do
    if "${c}" -c "import sys; assert sys.version_info[:2] == (${PY_VERSION/./, })" >/dev/null 2>&1; then
      echo "${c}"
      return 0
    fi
  done
  return 1
}

installed_version() {
  "${SAM}" --version 2>/dev/null | awk '{print $NF}'
}

if [[ ! -x "${SAM}" || ! -x "${TOOL_VENV}/bin/python${PY_VERSION}" || "$(installed_version)" != "${SAM_VERSION}" ]]; then
  if ! PY="$(find_python)"; then
    echo "!! no working python${PY_VERSION} found (PATH or \$PYENV_ROOT/versions/${PY_VERSION}.*): sam build needs it" >&2
    exit 1
  fi
  echo ">> installing aws-sam-cli==${SAM_VERSION} into ${TOOL_VENV} (${PY})"
  rm -rf "${TOOL_VENV}"
  "${PY}" -m venv "${TOOL_VENV}"
  "${TOOL_VENV}/bin/pip" install --quiet --disable-pip-version-check "aws-sam-cli==${SAM_VERSION}"
fi

# `sam build` resolves python3.12 from PATH for BuildMethod python3.12: the tool
# venv's interpreter goes first (a host shim of the same name may not run).
export PATH="${TOOL_VENV}/bin:${PATH}"

cd "${ROOT}"
echo ">> sam --version: $("${SAM}" --version)"
echo ">> sam validate --lint"
"${SAM}" validate --lint --template-file template.yaml

# What SAM generates is what gets deployed: no managed policies, no extra roles.
echo ">> SAM transform output"
"${TOOL_VENV}/bin/python" scripts/check_sam_transform.py template.yaml

if [[ "${SAM_CHECK_SKIP_BUILD:-0}" == "1" ]]; then
  echo ">> build skipped (SAM_CHECK_SKIP_BUILD=1)"
  exit 0
fi

# No --parallel: builds run one after another (the CI runners are small).
echo ">> sam build (no container, serial, python${PY_VERSION})"
"${SAM}" build --template-file template.yaml --no-use-container --no-cached

# The layer is only useful if the package lands on Lambda's import path
# (/opt/python), i.e. under python/ in the layer build output, with wheels for
# the functions' runtime.
LAYER_DIR=".aws-sam/build/DocllmLayer/python"
LAYER_INIT="${LAYER_DIR}/docllm/__init__.py"
if [[ ! -f "${LAYER_INIT}" ]]; then
  echo "!! ${LAYER_INIT} missing: the layer would not expose the docllm package" >&2
  exit 1
fi
TAG="cp${PY_VERSION/./}"
WRONG=$(find "${LAYER_DIR}" -name "*.so" -path "*cpython-*" ! -name "*cpython-${PY_VERSION/./}-*" | head -5)
if [[ -n "${WRONG}" ]]; then
  echo "!! layer has extension modules for another Python than ${TAG}:" >&2
  echo "${WRONG}" >&2
  exit 1
fi
echo ">> ok: ${LAYER_INIT} present, extension modules built for ${TAG}"
