#!/usr/bin/env bash
# Every check, in the order that fails fastest: lint, types, tests. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -m ruff check cosmos_workflow tests benchmarks scripts examples
"$PY" -m ruff format --check cosmos_workflow tests benchmarks scripts examples
"$PY" -m mypy
if command -v shellcheck >/dev/null 2>&1; then shellcheck scripts/*.sh scripts/ci/*.sh benchmarks/*.sh .ci/run; fi
"$PY" -m pytest "$@"
