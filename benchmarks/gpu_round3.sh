#!/usr/bin/env bash
# Issue 26's lease, one command per step, on the GPU machine from the repository root, after the vLLM
# bundle's parts reached /tmp/vbundle (benchmarks/vllm_part.sh; BENCHMARKS.md, "Getting vLLM onto the
# lent GPU machine"). Each step writes its whole log and its results' JSON files under $OUT (the lease
# tool's folder that comes back; ./gpu-out elsewhere).
#   bash benchmarks/gpu_round3.sh kit      the hf route's small dependencies from the carried .hfkit
#                                          (benchmarks/hf_kit.sh): shared, shots and same run without vLLM
#   bash benchmarks/gpu_round3.sh peer     install the bundle; prepare 1,024 requests; our --engine vllm
#                                          (cold vLLM compile cache), then bare vLLM (warm); PEER_PHASES
#                                          another list ("prepare bare table": bare alone, cold)
#   bash benchmarks/gpu_round3.sh shared   --engine hf, share_prefix=decode: cold, then warm; the table
#   bash benchmarks/gpu_round3.sh twice-bare   after the bundle is installed: bare vLLM twice over the 1,024
#                                          in one process (the second pass compiled, prefix cache reset)
#   bash benchmarks/gpu_round3.sh twice-hf  --engine hf (share_prefix=decode) likewise, then both routes' table
#   bash benchmarks/gpu_round3.sh twice-plain  --engine hf with share_prefix=off likewise, then the table
#   bash benchmarks/gpu_round3.sh plain    --engine hf plain (cold), then share_prefix=prefill; the table
#   bash benchmarks/gpu_round3.sh shots    200 shots from process start: bare vLLM, --engine vllm, hf
#                                          (SHOTS_ROUTES: some of them, e.g. "bare hf")
#   bash benchmarks/gpu_round3.sh mixed    --engine hf, share_prefix=off beside decode (each in a process of its own) on
#                                          1,024 requests over MIXED_VIDEOS clips (256: 4 prompts a clip; 1024: none shared)
#   bash benchmarks/gpu_round3.sh same     float32 greedy answers, shared prefixes against the plain loop
#   bash benchmarks/gpu_round3.sh profile  share_prefix=decode, 342 requests (PROFILE_ROWS) over 16 clips in one batch: the
#                                          kernels of a decoding step and of the prefill (gpu_upsample --profile);
#                                          PROFILE_EXTRA: more arguments, e.g. "--engine-option fold_heads=true"
set -euo pipefail
step=${1:?usage: gpu_round3.sh kit|peer|twice-bare|twice-hf|twice-plain|shared|plain|mixed|shots|same|profile}
out=${OUT:-$PWD/gpu-out}
work=/tmp/g
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export HF_PYTHONPATH=/tmp/hfsite:$PWD
# the bundle's vLLM where it is installed; before that (the hf kit alone), the hf site for every phase
if [[ -d /tmp/vsite ]]; then export PYTHONPATH=/tmp/vsite:$PWD; else export PYTHONPATH=$HF_PYTHONPATH; fi

hf_site() {  # the image's transformers and tokenizers, the bundle's small dependencies
    mkdir -p /tmp/hfsite
    [[ -e /tmp/hfsite/.kit ]] && return  # the hf kit installed them already
    for f in /tmp/vsite/*; do
        case $(basename "$f") in transformers* | tokenizers* | vllm*) ;; *) ln -sfn "$f" /tmp/hfsite/ ;; esac
    done
}

results() {  # the phases' figures (not the records, prompts or frames) as one archive
    local folder=$1 name=$2
    (cd "$folder" && find . -maxdepth 1 -name '*.json' ! -name '*records*' ! -name prompts.json \
        ! -name frames.json ! -name boundary.json -print0 | tar czf "$out/$name.tgz" --null -T - table.md 2>/dev/null) || true
}

prepared() {  # the 1,024 requests, once a machine
    [[ -f $work/prompts.json ]] || bash benchmarks/gpu_vllm.sh "$work" 1024 prepare
}

prepared_phase() {  # "prepare" until the requests are there
    [[ -f $work/prompts.json ]] || echo prepare
}

case $step in
    kit)
        # the hf route's dependencies from the carried .hfkit (benchmarks/hf_kit.sh), without vLLM
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/hfsite .hfkit/*.whl
        touch /tmp/hfsite/.kit
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader ;;
    peer)
        bash benchmarks/vllm_install.sh >"$out/install.log" 2>&1 || { tail -20 "$out/install.log"; exit 1; }
        export PYTHONPATH=/tmp/vsite:$PWD
        hf_site
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
        bash benchmarks/gpu_vllm.sh "$work" 1024 "${PEER_PHASES:-$(prepared_phase) vllm bare table}" 2>&1 | tee "$out/peer.log" |
            grep -E '^\[|^===|^\||Error|Traceback' || true
        results "$work" peer ;;
    shared)
        prepared
        bash benchmarks/gpu_vllm.sh "$work" 1024 "shared table" 2>&1 | tee "$out/shared.log" |
            grep -E '^\[(hf|ceil)|^===|^\||Error|Traceback|^hf' | cut -c1-600 || true
        results "$work" shared ;;
    twice-bare | twice-hf | twice-plain)
        prepared
        mkdir -p "$work/twice"
        ln -sfn "$work/prompts.json" "$work/frames.json" "$work/boundary.json" "$work/twice/"
        case $step in
            twice-bare) phases=bare; export BARE_ARGS=--again ;;
            twice-hf) phases="shared-again table" ;;
            *) phases="plain-again table" ;;
        esac
        bash benchmarks/gpu_vllm.sh "$work/twice" 1024 "$phases" 2>&1 | tee -a "$out/twice.log" |
            grep -E '^\[(hf|bare|ceil)|^===|^\||Error|Traceback|^hf' | cut -c1-600 || true
        results "$work/twice" "$step" ;;
    plain)
        prepared
        HF_ARGS=--skip-boundary bash benchmarks/gpu_vllm.sh "$work" 1024 "hf shared-prefill table" 2>&1 |
            tee "$out/plain.log" | grep -E '^\[(hf|ceil)|^===|^\||Error|Traceback|^hf' | cut -c1-600 || true
        results "$work" plain ;;
    mixed)
        videos=${MIXED_VIDEOS:-256}
        MIXED_VIDEOS=$videos bash benchmarks/gpu_vllm.sh "$work" 1024 mixed 2>&1 | tee -a "$out/mixed.log" |
            grep -E '^\[(hf|ceil|prepare)|^===|^\||Error|Traceback|^hf' | cut -c1-600 || true
        results "$work/mixed-$videos" "mixed-$videos" ;;
    shots)
        bash benchmarks/gpu_vllm.sh "$work" 200 shots200 2>&1 | tee "$out/shots.log" |
            grep -E '^\[|^===|^\||Error|Traceback' | cut -c1-600 || true
        results "$work/200" shots ;;
    same)
        PYTHONPATH=$HF_PYTHONPATH python3 benchmarks/gpu_same_answers.py --out /tmp/same --videos 2 --float32 \
            --variants "${SAME_VARIANTS:-loop_flex_shared_prefill,loop_flex_shared_decode,loop_flex_layers,loop_flex_shared_decode_layers}" \
            --reference loop_flex 2>&1 |
            tee "$out/same.log" | grep -E '^SAME|^\[|Error|Traceback' | cut -c1-600 || true
        cp /tmp/same/same_answers.json "$out/" 2>/dev/null || true ;;
    profile)
        # PROFILE_ROWS: the batch (342: the batches of the 1,024 on an H100, where 507 fit; 512 fit on an H200)
        rows=${PROFILE_ROWS:-342}
        # shellcheck disable=SC2086
        PYTHONPATH=$HF_PYTHONPATH python3 benchmarks/gpu_upsample.py --model pixtral-12b-random --requests "$rows" \
            --videos 16 --batch-size "$rows" --share-prefix decode --baseline-requests 0 --no-warmup --profile \
            --compile-cache "$work/hf-compile-cache" --out /tmp/profile ${PROFILE_EXTRA:-} 2>&1 | tee "$out/profile.log" |
            grep -E '^\[|hf batch timing|SUMMARY|Error|Traceback' | cut -c1-600 || true
        cp /tmp/profile/results.json /tmp/profile/profile_*.txt "$out/" 2>/dev/null || true ;;
    *) echo "unknown step $step (kit, peer, twice-bare, twice-hf, twice-plain, shared, plain, mixed, shots, same, profile)" >&2; exit 2 ;;
esac
