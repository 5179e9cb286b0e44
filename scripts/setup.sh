#!/usr/bin/env bash
# Development environment in .venv: CPU torch first (from this machine's disk, not a CUDA build),
# then the package with its dev extra.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[dev]"
echo "ready: .venv/bin/cosmos-workflow --help"
