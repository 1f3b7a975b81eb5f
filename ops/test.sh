#!/usr/bin/env bash
# The whole suite: lint, types, then unit, stream, integration, e2e and chaos tests in one pytest run
# (the fixtures start what is missing: see tests/support/stack.py). Fails when pytest collects no test
# (exit 5): a suite that ran nothing proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=.venv/bin

$VENV/ruff check . || exit 1
$VENV/ruff format --check . || exit 1
$VENV/mypy || exit 1

$VENV/pytest "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests: failing, a suite that ran nothing proves nothing" >&2
  exit 1
fi
exit $rc
