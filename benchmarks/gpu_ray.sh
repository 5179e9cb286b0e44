#!/usr/bin/env bash
# Issue 12's GPU figure: the same requests through a Ray actor pool of 1 GPU actor and of N
# (--executor ray; each run starts a local Ray cluster on this host and stops it), and through the
# local executor on one GPU (Ray's overhead). hf engine, full-size Pixtral-12B architecture with
# random weights. Run on a host with N GPUs, from the repository root, with the ray extra installed:
#
#   bash benchmarks/gpu_ray.sh              # REQUESTS=256 ACTORS=2 BATCH=64 COMPILE=false OUT=/tmp/gpu_ray
#
# Prints, per run, wall time from process start to exit; the CLI's own summary (items/s) is in the
# logs under $OUT. Records go to $OUT/<run>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
REQUESTS=${REQUESTS:-256}
ACTORS=${ACTORS:-2}
BATCH=${BATCH:-64}
COMPILE=${COMPILE:-false}
OUT=${OUT:-/tmp/gpu_ray}
mkdir -p "$OUT"

"$PY" benchmarks/gpu_upsample.py --write-prompts "$OUT/prompts.json" --requests "$REQUESTS" --videos 32 \
    --out "$OUT/work"

common=(upsample-prompts "$OUT/prompts.json" --engine hf --model pixtral-12b-random --batch-size "$BATCH"
        --engine-option static_cache=true --engine-option batch_bucket=128 --engine-option ignore_eos=true
        --engine-option "compile=$COMPILE" --no-clips --force)

timed() {  # name, command...
    local name=$1 start end
    shift
    start=$(date +%s%N)
    "$@" >"$OUT/$name.log" 2>&1 || true  # exit 3: every ignore_eos answer is reported as cut off
    end=$(date +%s%N)
    printf '%s: %d ms wall\n' "$name" $(((end - start) / 1000000)) | tee -a "$OUT/table.txt"
}

timed local env CUDA_VISIBLE_DEVICES=0 "$PY" -m cosmos_workflow "${common[@]}" -o "$OUT/local.json"
timed ray1 "$PY" -m cosmos_workflow "${common[@]}" --executor ray --ray-actors 1 -o "$OUT/ray1.json"
timed "ray$ACTORS" "$PY" -m cosmos_workflow "${common[@]}" --executor ray --ray-actors "$ACTORS" \
    -o "$OUT/ray$ACTORS.json"
"$PY" - "$OUT/local.json" "$OUT/ray1.json" "$OUT/ray$ACTORS.json" <<'PY'
import json, sys
sets = [sorted(r["name"] for r in json.load(open(p))) for p in sys.argv[1:]]
print("same items in every run:", all(s == sets[0] for s in sets), "-", len(sets[0]), "items")
PY
grep -h "items (" "$OUT"/local.log "$OUT"/ray*.log
