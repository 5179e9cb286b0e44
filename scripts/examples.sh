#!/usr/bin/env bash
# The README's first command: set up what is missing, then upsample the shipped examples with the
# tiny random Pixtral model (its text is random: it shows the pipeline, not the wording).
# Extra arguments go to upsample-prompts (e.g. --force).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/cosmos-workflow upsample-prompts examples/prompts.json -o out/upsampled.json \
  --engine hf --model tiny-random "$@"
