#!/usr/bin/env bash
# Static analysis of template.yaml: cfn-lint (the project venv's pinned copy, the one
# the unit tests import) and checkov (its own tool venv, .tools/checkov, pinned here).
# The two run side by side; each one's report is printed whole, then the script fails
# if either failed. Both work offline.
#
# Checkov findings are fixed in the template or skipped per resource with a reason
# (Metadata: checkov: skip: [{id, comment}]), never globally.
set -euo pipefail

CHECKOV_VERSION="3.3.30"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKOV_VENV="${ROOT}/.tools/checkov"
CHECKOV="${CHECKOV_VENV}/bin/checkov"
cd "${ROOT}"

if [[ ! -x .venv/bin/cfn-lint ]]; then
  echo "!! .venv/bin/cfn-lint missing: run scripts/setup.sh" >&2
  exit 1
fi
if [[ ! -x "${CHECKOV}" ]] || [[ "$("${CHECKOV_VENV}/bin/pip" show checkov 2>/dev/null | awk '/^Version:/{print $2}')" != "${CHECKOV_VERSION}" ]]; then
  echo ">> installing checkov==${CHECKOV_VERSION} into ${CHECKOV_VENV}"
  rm -rf "${CHECKOV_VENV}"
  PY=python3
  for c in python3.12 python3.11 python3; do
    if "${c}" -c "" >/dev/null 2>&1; then PY="${c}"; break; fi
  done
  "${PY}" -m venv "${CHECKOV_VENV}"
  "${CHECKOV_VENV}/bin/pip" install --quiet --disable-pip-version-check "checkov==${CHECKOV_VERSION}"
fi

logs="$(mktemp -d)"
trap 'rm -rf "${logs}"' EXIT

# The template's Metadata cfn-lint config applies (W1030/W1033 off, see template.yaml).
.venv/bin/cfn-lint template.yaml >"${logs}/cfn-lint" 2>&1 &
cfn_pid=$!
# --skip-download: no calls to Prisma Cloud for guideline links (offline CI).
"${CHECKOV}" --file template.yaml --framework cloudformation --compact --quiet --skip-download \
  >"${logs}/checkov" 2>&1 &
checkov_pid=$!

status=0
if wait "${cfn_pid}"; then
  echo ">> cfn-lint $(.venv/bin/cfn-lint --version | awk '{print $NF}'): clean"
else
  echo "!! cfn-lint findings:" >&2
  cat "${logs}/cfn-lint" >&2
  status=1
fi
if wait "${checkov_pid}"; then
  echo ">> checkov ${CHECKOV_VERSION}: $(grep -E 'Passed checks' "${logs}/checkov" || echo 'no results')"
else
  echo "!! checkov findings:" >&2
  cat "${logs}/checkov" >&2
  status=1
fi
exit "${status}"
