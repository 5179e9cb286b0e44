#!/usr/bin/env bash
# Issues 5 and 17: the same requests through 1 rank and through N ranks (torchrun), hf engine,
# full-size Pixtral-12B architecture with random weights. Run on a host with N GPUs:
#
#   REQUESTS=512 bash benchmarks/gpu_multi.sh   # defaults: REQUESTS=128 RANKS=2 COMPILE=false
#                                               #   BATCH=64 OUT=/tmp/gpu_multi
#
# MODEL=tiny-random DEVICE=cpu REQUESTS=4 runs the same commands on a CPU (a check of the script,
# not a measurement); DEVICE=cuda:0 puts every rank on one GPU (a check of the GPU path with one
# card, not of scaling).
#
# Prints, per run, wall time from process start to exit; the CLI's own summary (items/s) and the
# engine's per-batch times are in the logs under $OUT. Records go to $OUT/r<ranks>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
REQUESTS=${REQUESTS:-128}
RANKS=${RANKS:-2}
COMPILE=${COMPILE:-false}
OUT=${OUT:-/tmp/gpu_multi}
MODEL=${MODEL:-pixtral-12b-random}
BATCH=${BATCH:-64}
DEVICE=${DEVICE:-}
mkdir -p "$OUT"

"$PY" benchmarks/gpu_upsample.py --write-prompts "$OUT/prompts.json" --requests "$REQUESTS" --videos 32 \
    --out "$OUT/work"

common=(upsample-prompts "$OUT/prompts.json" --engine hf --model "$MODEL" --batch-size "$BATCH"
        --engine-option static_cache=true --engine-option batch_bucket=128 --engine-option ignore_eos=true
        --engine-option "compile=$COMPILE" --no-clips --force)
if [[ -n $DEVICE ]]; then
    common+=(--device "$DEVICE")
fi

timed() {  # name, command...
    local name=$1 start end
    shift
    start=$(date +%s%N)
    "$@" >"$OUT/$name.log" 2>&1 || true  # exit 3: every ignore_eos answer is reported as cut off
    end=$(date +%s%N)
    printf '%s: %d ms wall\n' "$name" $(((end - start) / 1000000)) | tee -a "$OUT/table.txt"
}

timed r1 env CUDA_VISIBLE_DEVICES=0 "$PY" -m cosmos_workflow "${common[@]}" -o "$OUT/r1.json"
timed "r$RANKS" "$PY" -m torch.distributed.run --standalone --nproc_per_node="$RANKS" \
    -m cosmos_workflow "${common[@]}" -o "$OUT/r$RANKS.json"
"$PY" - "$OUT/r1.json" "$OUT/r$RANKS.json" <<'PY'
import json, sys
sets = [sorted(r["name"] for r in json.load(open(p))) for p in sys.argv[1:]]
print("same items in both runs:", sets[0] == sets[1], "-", len(sets[0]), "items")
PY
