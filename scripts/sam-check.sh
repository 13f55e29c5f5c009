#!/usr/bin/env bash
# Offline validation of the SAM application: `sam validate --lint` then `sam build`.
#
# Usage (from anywhere):   scripts/sam-check.sh            # validate + build
#                          SAM_CHECK_SKIP_BUILD=1 scripts/sam-check.sh   # validate only
#
# The SAM CLI lives in its own virtual environment (.tools/sam) because it pins
# its own boto3/botocore, which must not leak into the project venv that the
# code and tests run against. No AWS credentials and no Docker are needed:
# validate runs the SAM translator + cfn-lint locally, and the build uses the
# python3.11 build method on the host (requires a python3.11 on PATH).
set -euo pipefail

SAM_VERSION="1.170.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOL_VENV="${ROOT}/.tools/sam"
SAM="${TOOL_VENV}/bin/sam"
# validate needs a region to build ARNs; nothing is called in it.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-eu-west-1}"
export AWS_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION}}"
# No telemetry calls from CI.
export SAM_CLI_TELEMETRY=0

installed_version() {
  "${SAM}" --version 2>/dev/null | awk '{print $NF}'
}

if [[ ! -x "${SAM}" || "$(installed_version)" != "${SAM_VERSION}" ]]; then
  echo ">> installing aws-sam-cli==${SAM_VERSION} into ${TOOL_VENV}"
  python3.11 -m venv "${TOOL_VENV}" 2>/dev/null || python3 -m venv "${TOOL_VENV}"
  "${TOOL_VENV}/bin/pip" install --quiet --disable-pip-version-check "aws-sam-cli==${SAM_VERSION}"
fi

# `sam build` resolves python3.11 from PATH for BuildMethod python3.11; make the
# tool venv's interpreter win only if the host has no python3.11 of its own.
if ! command -v python3.11 >/dev/null 2>&1; then
  export PATH="${TOOL_VENV}/bin:${PATH}"
fi

cd "${ROOT}"
echo ">> sam --version: $("${SAM}" --version)"
echo ">> sam validate --lint"
"${SAM}" validate --lint --template-file template.yaml

if [[ "${SAM_CHECK_SKIP_BUILD:-0}" == "1" ]]; then
  echo ">> build skipped (SAM_CHECK_SKIP_BUILD=1)"
  exit 0
fi

# No --parallel: builds run one after another (the CI runners are small).
echo ">> sam build (no container, serial)"
"${SAM}" build --template-file template.yaml --no-use-container --no-cached

# The layer is only useful if the package lands on Lambda's import path
# (/opt/python), i.e. under python/ in the layer build output.
LAYER_INIT=".aws-sam/build/DocllmLayer/python/docllm/__init__.py"
if [[ ! -f "${LAYER_INIT}" ]]; then
  echo "!! ${LAYER_INIT} missing: the layer would not expose the docllm package" >&2
  exit 1
fi
echo ">> ok: ${LAYER_INIT} present"
