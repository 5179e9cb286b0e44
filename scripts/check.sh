#!/usr/bin/env bash
# The README's second command, and what CI runs: set up what is missing, then every check in the
# order that fails fastest: lint, format, types, layers, shell scripts, tests.
#
# `--quick` (first argument): the developer's tier, not CI's: the same checks, then only the tests
# not marked slow, and no version matrix. CI and a plain `bash scripts/check.sh` run everything.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
if [ "${1:-}" = "--quick" ]; then
  quick=(-m "not slow")
  shift
fi
if [ -z "${PY:-}" ]; then
  bash scripts/setup.sh
fi
PY=${PY:-.venv/bin/python}
# a full run: the install tests' stand-in for the Cosmos image (tests/integration/test_image_install.py)
# is built, where missing, while the checks below run, instead of holding both test workers later;
# a failure here is the tests' to report (they build it again, or skip without PyPI)
if [ $# -eq 0 ] && [ ${#quick[@]} -eq 0 ]; then
  bash scripts/ci/image_venv.sh .cache/ci/image-pristine >/dev/null 2>&1 &
fi
"$PY" -m ruff check cosmos_workflow tests benchmarks scripts examples
"$PY" -m ruff format --check cosmos_workflow tests benchmarks scripts examples
"$PY" -m mypy
"$(dirname "$PY")/lint-imports" --no-cache
shopt -s nullglob
shell_scripts=(scripts/*.sh scripts/ci/*.sh benchmarks/*.sh .ci/run)
if command -v shellcheck >/dev/null 2>&1; then shellcheck "${shell_scripts[@]}"; fi
# tests in parallel, one worker per logical CPU (`-n auto` counts physical cores where psutil is
# installed: 1 on a 2-vCPU VM); tests that share a module-scoped fixture, the Ray cluster or the Docker
# daemon stay on one worker (tests/conftest.py). Arguments pass through (`-n 0`: one process).
# Each worker's processes use its share of the cores for OpenMP (tests/conftest.py).
wait || true
"$PY" -m pytest -n logical --dist loadgroup --durations=25 ${quick[@]+"${quick[@]}"} "$@"
# a full run also tests the other ends of the dependency ranges: the Cosmos image's pins and the
# lowest transformers the hf extra allows, each in its own environment (built once, under .cache/ci)
if [ $# -eq 0 ] && [ ${#quick[@]} -eq 0 ]; then PY="$PY" bash scripts/ci/version_matrix.sh; fi
