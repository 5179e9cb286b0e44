#!/usr/bin/env bash
# The hf route's small kit for the lent GPU machine: the wheels of the bundle (.vbundle/wheels, made by
# benchmarks/vllm_bundle.sh from benchmarks/vllm-h200.lock) that the hf engine and the benchmarks need
# and the image lacks: PyAV, mistral-common, pydantic and their small dependencies. About 53 MB: one
# run's carry, so a lease's first call can measure the hf engine before vLLM's 7 parts arrive.
#   here:  bash benchmarks/hf_kit.sh                      -> .hfkit/*.whl (git-ignored)
#   there: run(command="bash benchmarks/gpu_round3.sh kit && ...", carry=[".hfkit"])
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wheels=$root/.vbundle/wheels
kit=$root/.hfkit
names=(av mistral_common pycountry pydantic pydantic_core annotated_types typing_inspection
    pydantic_extra_types jsonschema referencing rpds_py jsonschema_specifications)
[[ -d $wheels ]] || { echo "no $wheels: run benchmarks/vllm_bundle.sh first" >&2; exit 1; }
rm -rf "$kit" && mkdir -p "$kit"
for name in "${names[@]}"; do
    found=("$wheels/$name"-[0-9]*.whl)
    [[ -f ${found[0]} ]] || { echo "the bundle has no wheel for $name" >&2; exit 1; }
    cp "${found[@]}" "$kit/"
done
echo "$(find "$kit" -name '*.whl' | wc -l) wheels, $(du -sh "$kit" | cut -f1) in $kit"
