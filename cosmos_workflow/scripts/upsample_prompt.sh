#!/usr/bin/env bash
# Upsample a batch of prompts with cosmos-workflow, on this machine or inside the Cosmos-Transfer1
# Docker image, on one GPU or several (torchrun, one rank per GPU).
#
# Usage:
#   upsample_prompt.sh PROMPTS_FILE OUTPUT_FILE [PREPROCESS_VIDEOS] [MAX_RESOLUTION] [NUM_FRAMES] [NUM_GPU] [-- EXTRA...]
#
#   PROMPTS_FILE       JSON list (or .jsonl) of {name, prompt, video_path}
#   OUTPUT_FILE        output JSON list (its folder is created)
#   PREPROCESS_VIDEOS  true|false (default true): fit frames to the model's token budget
#   MAX_RESOLUTION     long side cap in pixels, or "auto" (default 480)
#   NUM_FRAMES         frames per video (default 2)
#   NUM_GPU            GPUs; more than 1 runs torchrun --nproc_per_node=NUM_GPU (default 1)
#   EXTRA...           passed verbatim to `cosmos-workflow upsample-prompts` (e.g. --seed 7)
#
# Environment (all optional):
#   CHECKPOINT_DIR / COSMOS_MODEL  model checkpoint folder (CHECKPOINT_DIR wins); default: the CLI's
#   ENGINE             hf, vllm, openai, auto or fake (default: the CLI's)
#   BATCH_SIZE         requests per engine call
#   EXTRA_ARGS         more CLI arguments, ONE PER LINE (so an argument may contain spaces)
#   PYTHON             interpreter that has cosmos-workflow (default python3, else python)
#   DRY_RUN=1          print the command instead of running it (nothing is created)
#   DOCKER=1           run inside a container: this script re-invokes itself there
#     IMAGE            image (default nvcr.io/ubuntu/cosmos-transfer1:latest)
#     DOCKER_BIN       docker client (default docker)
#     DOCKER_GPUS      value of --gpus (default all; "none": no --gpus, for a host without GPU)
#     MOUNTS           more host folders to mount at the same path, one per line (e.g. video folders;
#                      the prompts, output and checkpoint folders are mounted already)
#     DOCKER_ARGS      more `docker run` arguments, one per line
#     CONTAINER_USER   UID:GID: in the container, install as root, then run cosmos-workflow as that
#                      user (umask 077), so what it writes in the mounted folders is that user's
#     COSMOS_WORKFLOW_PIP  pip requirement installed in the container (e.g. a wheel under a mounted
#                      folder), even over a cosmos_workflow the image has; default: when the image
#                      has none, this checkout, mounted read-only at /opt/cosmos-workflow, from a copy.
#                      Either way pip is constrained to the image's own `pip list --format=freeze`:
#                      no package the image has (vLLM, transformers, numpy, ...) changes version.
#
# Exit code: that of cosmos-workflow (0 ok, 3 some items failed, 1 error), 2 for bad arguments.

set -euo pipefail

readonly CONTAINER_SRC=/opt/cosmos-workflow
readonly DEFAULT_IMAGE=nvcr.io/ubuntu/cosmos-transfer1:latest

die() {
    printf 'upsample_prompt.sh: error: %s\n' "$1" >&2
    exit "${2:-2}"
}

usage() {
    sed -n '5,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Lines of a variable as array elements (empty lines dropped): arguments may hold spaces.
lines_to_array() {
    local -n target=$1
    local line
    target=()
    while IFS= read -r line; do
        if [[ -n "$line" ]]; then target+=("$line"); fi
    done <<<"${2:-}"
}

absolute() {
    local dir
    dir=$(dirname -- "$1")
    if [[ -d "$dir" ]]; then
        dir=$(cd -- "$dir" && pwd -P) || die "cannot enter the folder of $1" 1
    elif [[ "$dir" != /* ]]; then
        dir="$PWD/$dir" # DRY_RUN: the output folder is not created, so it may not exist yet
    fi
    printf '%s/%s\n' "$dir" "$(basename -- "$1")"
}

# docker -v splits its value at ':' ("SRC:DST:ro"), so such a path cannot be mounted.
mountable() {
    [[ "$1" != *:* ]] || die "path '$1' contains ':', which docker -v cannot mount; move or link it to a path without ':'"
    printf '%s\n' "$1"
}

parse_bool() {
    case "${1,,}" in
        true | 1 | yes | on) echo --preprocess-videos ;;
        false | 0 | no | off) echo --no-preprocess ;;
        *) die "PREPROCESS_VIDEOS must be true or false, got '$1'" ;;
    esac
}

check_number() { # NAME VALUE MIN
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a whole number, got '$2'"
    ((10#$2 >= $3)) || die "$1 must be at least $3, got '$2'"
}

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then
        echo "$PYTHON"
    elif command -v python3 >/dev/null 2>&1; then
        echo python3
    else
        echo python
    fi
}

dry_run() { [[ "${DRY_RUN:-0}" == 1 ]]; }

run_or_print() {
    if dry_run; then
        printf '%q ' "$@"
        printf '\n'
        exit 0
    fi
    exec "$@"
}

# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------

POSITIONAL=()
while (($# > 0)) && ((${#POSITIONAL[@]} < 6)) && [[ "$1" != "--" ]]; do
    POSITIONAL+=("$1")
    shift
done
if [[ "${1:-}" == "--" ]]; then shift; fi
PASSTHROUGH=("$@")
((${#POSITIONAL[@]} >= 2)) || usage
PROMPTS_FILE=${POSITIONAL[0]}
OUTPUT_FILE=${POSITIONAL[1]}
PREPROCESS_VIDEOS=${POSITIONAL[2]:-true}
MAX_RESOLUTION=${POSITIONAL[3]:-480}
NUM_FRAMES=${POSITIONAL[4]:-2}
NUM_GPU=${POSITIONAL[5]:-1}

[[ -e "$PROMPTS_FILE" ]] || die "prompts file '$PROMPTS_FILE' not found; pass an existing JSON list of {name, prompt, video_path}" 1
[[ -f "$PROMPTS_FILE" ]] || die "prompts file '$PROMPTS_FILE' is not a regular file (a FIFO, device or folder); pass a JSON list of {name, prompt, video_path}" 1
PREPROCESS_FLAG=$(parse_bool "$PREPROCESS_VIDEOS")
[[ "$MAX_RESOLUTION" == auto ]] || check_number MAX_RESOLUTION "$MAX_RESOLUTION" 16
check_number NUM_FRAMES "$NUM_FRAMES" 0
check_number NUM_GPU "$NUM_GPU" 1
MODEL=${CHECKPOINT_DIR:-${COSMOS_MODEL:-}}
if [[ -n "${CHECKPOINT_DIR:-}" && ! -d "$CHECKPOINT_DIR" ]]; then
    die "CHECKPOINT_DIR '$CHECKPOINT_DIR' is not a folder; download the checkpoint or fix the path" 1
fi
if [[ -n "${BATCH_SIZE:-}" ]]; then check_number BATCH_SIZE "$BATCH_SIZE" 1; fi
lines_to_array EXTRA "${EXTRA_ARGS:-}"
if ! dry_run; then # DRY_RUN=1 prints the command and changes nothing
    mkdir -p -- "$(dirname -- "$OUTPUT_FILE")" || die "cannot create the folder of '$OUTPUT_FILE'" 1
fi

# ---------------------------------------------------------------------------------------------
# Docker: re-invoke this script inside the image, the data mounted at the same paths
# ---------------------------------------------------------------------------------------------

docker_command() {
    local script_dir repo prompts output path
    script_dir=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
    repo=$(mountable "$(dirname -- "$script_dir")")
    prompts=$(mountable "$(absolute "$PROMPTS_FILE")")
    output=$(mountable "$(absolute "$OUTPUT_FILE")")
    local -a mounts extra_docker cmd
    lines_to_array mounts "${MOUNTS:-}"
    lines_to_array extra_docker "${DOCKER_ARGS:-}"
    for path in "${mounts[@]}"; do
        [[ -e "$path" ]] || die "MOUNTS entry '$path' does not exist on this host" 1
        mountable "$path" >/dev/null
    done
    mounts+=("$(dirname -- "$prompts")" "$(dirname -- "$output")")
    cmd=("${DOCKER_BIN:-docker}" run --rm)
    if [[ "${DOCKER_GPUS:-all}" != none ]]; then cmd+=(--gpus "${DOCKER_GPUS:-all}"); fi
    cmd+=(--ipc=host)
    cmd+=(-v "$repo:$CONTAINER_SRC:ro")
    if [[ -n "${CHECKPOINT_DIR:-}" ]]; then
        path=$(mountable "$(cd -- "$CHECKPOINT_DIR" && pwd -P)")
        cmd+=(-v "$path:$path:ro" -e "CHECKPOINT_DIR=$path")
    fi
    mapfile -t mounts < <(printf '%s\n' "${mounts[@]}" | sort -u)
    for path in "${mounts[@]}"; do
        cmd+=(-v "$path:$path")
    done
    cmd+=(-e DOCKER=0 -e IN_CONTAINER=1)
    local name
    for name in COSMOS_MODEL ENGINE BATCH_SIZE EXTRA_ARGS PYTHON COSMOS_WORKFLOW_PIP CONTAINER_USER; do
        if [[ -n "${!name:-}" ]]; then cmd+=(-e "$name"); fi
    done
    cmd+=("${extra_docker[@]}" "${IMAGE:-$DEFAULT_IMAGE}")
    cmd+=(bash "$CONTAINER_SRC/scripts/upsample_prompt.sh" "$prompts" "$output")
    cmd+=("$PREPROCESS_VIDEOS" "$MAX_RESOLUTION" "$NUM_FRAMES" "$NUM_GPU" -- "${PASSTHROUGH[@]}")
    run_or_print "${cmd[@]}"
}

if [[ "${DOCKER:-0}" == 1 ]]; then
    docker_command
fi

# ---------------------------------------------------------------------------------------------
# Here (or inside the container): make sure cosmos-workflow is importable, then run it
# ---------------------------------------------------------------------------------------------

PY=$(pick_python)
command -v "$PY" >/dev/null 2>&1 || die "python interpreter '$PY' not found; set PYTHON=/path/to/python" 1

ensure_installed() {
    if "$PY" -c 'import cosmos_workflow' 2>/dev/null; then
        [[ "${IN_CONTAINER:-0}" == 1 && -n "${COSMOS_WORKFLOW_PIP:-}" ]] || return 0
    fi
    [[ "${IN_CONTAINER:-0}" == 1 ]] || die "cosmos_workflow is not importable by $PY; run: pip install -e . (or set PYTHON)" 1
    local spec=${COSMOS_WORKFLOW_PIP:-}
    if [[ -z "$spec" ]]; then
        # the checkout is mounted read-only; pip builds in the source folder, so build from a copy
        spec=$(mktemp -d)
        tar -C "$CONTAINER_SRC" --exclude=.venv --exclude=.git -cf - . | tar -C "$spec" -xf -
    fi
    # every package the image already has stays at the image's version: constraints from its own freeze
    local constraints
    constraints=$(mktemp)
    "$PY" -m pip list --format=freeze --exclude cosmos-workflow >"$constraints"
    printf 'installing cosmos-workflow from %s, the image'\''s packages kept as they are\n' "$spec" >&2
    "$PY" -m pip install --quiet --no-warn-script-location --constraint "$constraints" "$spec" ||
        die "pip could not install cosmos-workflow from $spec without changing a package the image pins; see pip's message above, or set COSMOS_WORKFLOW_PIP to a wheel" 1
    # the same version may be installed already: this exact build replaces it
    "$PY" -m pip install --quiet --no-warn-script-location --no-deps --force-reinstall "$spec" ||
        die "pip could not install cosmos-workflow from $spec" 1
}

# values joined with '=' and the file after '--': a path starting with '-' is never read as an option
CLI=(upsample-prompts "--output-file=$OUTPUT_FILE" "$PREPROCESS_FLAG")
CLI+=(--max-resolution "$MAX_RESOLUTION" --num-frames "$NUM_FRAMES")
if [[ -n "$MODEL" ]]; then CLI+=("--model=$MODEL"); fi
if [[ -n "${ENGINE:-}" ]]; then CLI+=(--engine "$ENGINE"); fi
if [[ -n "${BATCH_SIZE:-}" ]]; then CLI+=(--batch-size "$BATCH_SIZE"); fi
CLI+=("${EXTRA[@]}" "${PASSTHROUGH[@]}" -- "$PROMPTS_FILE")

if ((NUM_GPU > 1)); then
    LAUNCH=("$PY" -m torch.distributed.run --standalone --nproc_per_node="$NUM_GPU" -m cosmos_workflow)
else
    LAUNCH=("$PY" -m cosmos_workflow)
fi
if ! dry_run; then ensure_installed; fi
# installed as root (the image's environment is root's); run as the user who owns the mounts
if [[ -n "${CONTAINER_USER:-}" && "$(id -u)" == 0 ]]; then
    [[ "$CONTAINER_USER" =~ ^[0-9]+:[0-9]+$ ]] || die "CONTAINER_USER must be UID:GID, got '$CONTAINER_USER'"
    umask 077
    export HOME=/tmp # root's home is not that user's; caches go to the throwaway container's /tmp
    LAUNCH=(setpriv "--reuid=${CONTAINER_USER%%:*}" "--regid=${CONTAINER_USER##*:}" --clear-groups -- "${LAUNCH[@]}")
fi
run_or_print "${LAUNCH[@]}" "${CLI[@]}"
