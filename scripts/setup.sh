#!/usr/bin/env bash
# Development environment in .venv, set up only where something is missing or pyproject.toml
# changed: CPU torch first (from this machine's disk, not a CUDA build), then the package with its
# dev extra. Safe to run again; a second run with nothing changed takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.setup-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -x .venv/bin/cosmos-workflow ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[dev]"
echo "$want" > "$stamp"
echo "ready: .venv/bin/cosmos-workflow --help"
