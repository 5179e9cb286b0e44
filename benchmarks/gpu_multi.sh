#!/usr/bin/env bash
# 1 rank vs N torchrun ranks, the same requests, hf engine, full-size Pixtral-12B with random weights.
#
# Run from the repository root on a host with N GPUs (default 2):
#
#   bash benchmarks/gpu_multi.sh
#
# Environment: GPUS (2), ITEMS (128), BATCH_SIZE (32), MAX_TOKENS (300), MAX_RESOLUTION (480),
#   ARCH (pixtral-12b; "tiny" smoke-tests the script on CPU), WORK (a temp folder), OUT (results
#   folder: log, outputs' timing, the table; default WORK), RUNS ("1 N": which rank counts to run).
# Packages missing on the GPU machine (PyAV, mistral-common, pydantic, ...) are installed from
# wheels in .whl/ when that folder exists (see the device notes for how to download them).
#
# Prints a markdown table for BENCHMARKS.md: requests/s for each run and the speed-up over 1 rank.

set -euo pipefail

GPUS=${GPUS:-2}
ITEMS=${ITEMS:-128}
ARCH=${ARCH:-pixtral-12b}
WORK=${WORK:-$(mktemp -d)}
OUT=${OUT:-$WORK}
RUNS=${RUNS:-"1 $GPUS"}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

if [[ -d .whl ]] && ! "$PY" -c 'import av, mistral_common, pydantic' 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"

run_args=(--arch "$ARCH" --batch-size "${BATCH_SIZE:-32}" --max-tokens "${MAX_TOKENS:-300}"
    --max-resolution "${MAX_RESOLUTION:-480}")

{
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
    "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
    "$PY" benchmarks/gpu_multi.py prepare "$WORK" --items "$ITEMS"
    outputs=()
    for ranks in $RUNS; do
        output=$WORK/r$ranks/out.json
        rm -rf "$WORK/r$ranks"
        mkdir -p "$WORK/r$ranks"
        echo "=== $ranks rank(s)"
        if ((ranks > 1)); then
            "$PY" -m torch.distributed.run --standalone --nproc_per_node="$ranks" \
                benchmarks/gpu_multi.py run "$WORK/prompts.json" "$output" "${run_args[@]}"
        else
            "$PY" benchmarks/gpu_multi.py run "$WORK/prompts.json" "$output" "${run_args[@]}"
        fi
        for timing in "$output".timing.rank*.json; do
            cp "$timing" "$OUT/r$ranks-${timing##*/}"
        done
        outputs+=("$output")
    done
    "$PY" benchmarks/gpu_multi.py report "${outputs[@]}" | tee "$OUT/table.md"
} 2>&1 | tee "$OUT/gpu_multi.log"
