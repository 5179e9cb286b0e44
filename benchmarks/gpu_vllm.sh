#!/usr/bin/env bash
# vLLM beside the hf engine on one GPU (issue 22); see benchmarks/gpu_vllm.py for what each phase does.
#   bash benchmarks/gpu_vllm.sh OUT_DIR [REQUESTS] [PHASES]
# PHASES (default "prepare bare vllm cli hf table") may be split across calls that share OUT_DIR.
# vLLM's compile cache is the default one: the first vLLM phase on a machine starts cold (about 200 s), the
# later ones warm; BARE_COLD=1 gives bare an empty cache of its own (a cold start whatever ran before).
# shots200 (not in the default list): 200 shots per route from process start, warm caches (issue 26;
# hf: share_prefix=decode, run once to compile its shapes, then measured);
# shared-again (not in the default list): that route in one process, a second pass on the compiled
# engine beside the first (--again); plain-again: the same with share_prefix=off;
# shared (not in the default list): the hf route with share_prefix=decode (each clip's frames
# prefilled once per batch, as vLLM's prefix cache does, and read once per decoding step), cold then
# warm; shared-prefill: share_prefix=prefill (prefilled once only; after hf compiled the plain graphs).
# distinct (not in the default list): the three routes on REQUESTS items of as many clips, so no two
# requests share frames and no prefix cache helps (the workload of shots that each have a video).
# mixed (not in the default list): the hf route with share_prefix=off and decode, each in a process
# of its own, on REQUESTS items over MIXED_VIDEOS clips (default a quarter: 4 prompts a clip; REQUESTS:
# none shared): the workloads between one prompt a clip and 64 that decide share_prefix's default.
# HF_PYTHONPATH, when set, is the hf route's PYTHONPATH (the image's transformers, not the bundle's).
set -euo pipefail
out=$1
requests=${2:-1024}
phases=${3:-prepare bare vllm cli hf table}
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
hf_site=${HF_PYTHONPATH:-${PYTHONPATH:-}}

hf() {  # gpu_vllm.py's hf route, with the hf route's PYTHONPATH: hf FOLDER [ARGUMENTS...]
  # HF_EXTRA: more arguments for every hf run, e.g. "--engine-option decode_step=layers --tag layers"
  local folder=$1
  shift
  # shellcheck disable=SC2086
  PYTHONPATH=$hf_site "$py" benchmarks/gpu_vllm.py hf --out "$folder" "$@" ${HF_EXTRA:-}
}

for phase in $phases; do
  echo "=== $phase $(date -u +%T)"
  case $phase in
    bare)
      (
        if [[ ${BARE_COLD:-0} == 1 ]]; then VLLM_CACHE_ROOT=$(mktemp -d); export VLLM_CACHE_ROOT; fi
        # BARE_ARGS: more arguments, e.g. --again (a second pass, its figures apart)
        # shellcheck disable=SC2086
        "$py" benchmarks/gpu_vllm.py bare --out "$out" ${BARE_ARGS:-}
      ) ;;
    cli)
      # the real CLI on the shipped examples, every plan as large as fits (--max-resolution auto)
      /usr/bin/time -f "cli wall %e s" "$py" -m cosmos_workflow upsample-prompts examples/prompts.json \
        -o "$out/examples.json" --engine vllm --model pixtral-12b-random --max-resolution auto \
        --engine-option ignore_eos=true --force ;;
    shots200)
      # issue 26: 200 shots from process start to the last result, warm compile caches (run after
      # the vllm and hf phases filled them), bare vLLM beside our hf and vllm pipelines
      "$py" benchmarks/gpu_vllm.py prepare --out "$out/200" --requests 200 --boundary 4
      # SHOTS_ROUTES: which routes (default all: bare vLLM, our vllm and hf pipelines, the hf CLI)
      routes=" ${SHOTS_ROUTES:-bare vllm hf hfcli} "
      if [[ $routes == *" bare "* ]]; then "$py" benchmarks/gpu_vllm.py bare --out "$out/200" --name bare-200; fi
      if [[ $routes == *" vllm "* ]]; then
        "$py" benchmarks/gpu_vllm.py vllm --out "$out/200" --name vllm-200 --skip-boundary
      fi
      # the hf route twice: the first compiles this run's batch shapes (cold), the second is the figure
      [[ $routes == *" hf "* ]] && hf_runs="hf-200-cold hf-200" || hf_runs=""
      for run in $hf_runs; do
        hf "$out/200" --name "$run" --compile-cache "$out/hf-compile-cache" --engine-option share_prefix=decode \
          --skip-boundary
      done
      if [[ $routes == *" hfcli "* ]]; then
        # the real CLI on the same 200 items from process start (the engine loads beside the
        # planning), on the compile cache the hf runs filled
        PYTHONPATH=$hf_site /usr/bin/time -f "[hf-cli-200] process wall %e s" \
          "$py" -m cosmos_workflow upsample-prompts "$out/200/prompts.json" -o "$out/200/hf-cli.json" \
          --engine hf --model pixtral-12b-random --max-resolution 480 --max-tokens 300 --temperature 0.6 \
          --engine-option share_prefix=decode --engine-option ignore_eos=true \
          --engine-option "compile_cache=$out/hf-compile-cache" --force -q || true
      fi
      "$py" benchmarks/gpu_vllm.py table --out "$out/200" ;;
    shared)
      # share_prefix=decode with its own graphs compiled in the run (cold), then again on its filled
      # cache (warm: as vLLM's figures, which compile at start-up, outside the timed run)
      # (the boundary set once, on the warm run)
      hf "$out" --skip-boundary --name hf-shared-decode-cold --compile-cache "$out/hf-compile-cache" \
        --engine-option share_prefix=decode
      hf "$out" --name hf-shared-decode --compile-cache "$out/hf-compile-cache" --engine-option share_prefix=decode ;;
    shared-again)
      # share_prefix=decode in one process, twice over the same requests: the first pass compiles
      # (cold on a new machine), the second runs on the compiled engine, as vLLM's first pass does
      hf "$out" --skip-boundary --again --name hf-shared-decode --compile-cache "$out/hf-compile-cache" \
        --engine-option share_prefix=decode ;;
    plain-again)
      # the plain engine (share_prefix=off) likewise: the figure that decides share_prefix's default
      hf "$out" --skip-boundary --again --name hf-plain --compile-cache "$out/hf-compile-cache" \
        --engine-option share_prefix=off ;;
    shared-prefill)
      # share_prefix=prefill decodes with the plain graphs (warm once the hf phase compiled them)
      hf "$out" --name hf-shared-prefill --compile-cache "$out/hf-compile-cache" \
        --engine-option share_prefix=prefill --skip-boundary ;;
    mixed)
      videos=${MIXED_VIDEOS:-$((requests / 4))}
      "$py" benchmarks/gpu_vllm.py prepare --out "$out/mixed-$videos" --requests "$requests" --videos "$videos"
      for share in off decode; do
        hf "$out/mixed-$videos" --skip-boundary --name "hf-$share" --compile-cache "$out/hf-compile-cache" \
          --engine-option "share_prefix=$share"
      done
      "$py" benchmarks/gpu_vllm.py table --out "$out/mixed-$videos" ;;
    distinct)
      "$py" benchmarks/gpu_vllm.py prepare --out "$out/distinct" --requests "$requests" --videos "$requests"
      "$py" benchmarks/gpu_vllm.py bare --out "$out/distinct" --name bare-distinct
      "$py" benchmarks/gpu_vllm.py vllm --out "$out/distinct" --name vllm-distinct
      hf "$out/distinct" --name hf-distinct --compile-cache "$out/hf-compile-cache"
      "$py" benchmarks/gpu_vllm.py table --out "$out/distinct" ;;
    hf)
      # HF_ARGS: more arguments for this phase's gpu_vllm.py, e.g. --skip-boundary
      # shellcheck disable=SC2086
      hf "$out" ${HF_ARGS:-} ;;
    *)
      "$py" benchmarks/gpu_vllm.py "$phase" --out "$out" --requests "$requests" ;;
  esac
done
