#!/usr/bin/env bash
# Builds the offline vLLM 0.26.0 bundle for the lent H200 (no network there; 64 MiB of files a command).
#
#   benchmarks/vllm_bundle.sh            download the locked wheels (those missing), tar, split
#   benchmarks/vllm_bundle.sh --relock   first rebuild benchmarks/vllm-h200.lock from .in + .overrides
#
# Output: .vbundle/wheels/*.whl (exactly the lock's set), .vbundle/part-00, part-01, ... (58 MiB each,
# one tar split) and .vbundle/vbundle.tar.sha256. Carry one part a command and copy it to the GPU
# machine's /tmp/vbundle/ (benchmarks/vllm_part.sh), then run benchmarks/vllm_install.sh there.
# Needs: uv (only for --relock), python3 with pip, sha256sum, tar, split. Idempotent: with every wheel
# present and matching the lock's hashes, nothing is downloaded.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
lock=$here/vllm-h200.lock
wants=$here/vllm-h200.in
overrides=$here/vllm-h200.overrides
out=$root/.vbundle
wheels=$out/wheels
part_size=58M
# The GPU machine: CPython 3.12.3 (Ubuntu 24.04's, so glibc 2.39), x86_64. The lock resolves for
# manylinux_2_35 (llguidance 1.7.6 ships manylinux_2_31 wheels only), a margin below 2.39.
platforms=(manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_33_x86_64 manylinux_2_32_x86_64
    manylinux_2_31_x86_64 manylinux_2_30_x86_64 manylinux_2_29_x86_64 manylinux_2_28_x86_64
    manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_25_x86_64
    manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux2010_x86_64
    manylinux1_x86_64)

relock=0
for arg in "$@"; do
    case $arg in
        --relock) relock=1 ;;
        -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

if ((relock)); then
    command -v uv >/dev/null || { echo "--relock needs uv (python3 -m pip install uv)" >&2; exit 1; }
    for f in "$wants" "$overrides"; do [[ -f $f ]] || { echo "missing $f" >&2; exit 1; }; done
    compile=(uv pip compile benchmarks/vllm-h200.in --override benchmarks/vllm-h200.overrides
        --python-version 3.12 --python-platform x86_64-manylinux_2_35 --generate-hashes --no-header)
    tmp=$(mktemp)
    trap 'rm -f "$tmp"' EXIT
    (cd "$root" && UV_PYTHON_DOWNLOADS=never "${compile[@]}" -o "$tmp" --quiet)
    {
        echo "# The offline vLLM bundle for the lent H200 (nvidia-h200: CPython 3.12.3, x86_64, torch"
        echo "# 2.11.0+cu130, the image's packages in .library/device/KINDS.md). Made $(date -u +%F) with"
        echo "# $(uv --version) by benchmarks/vllm_bundle.sh --relock, run from the repo root:"
        echo "#   UV_PYTHON_DOWNLOADS=never ${compile[*]}"
        echo "# Only what the image lacks (or holds in another version) is here; install with --no-deps."
        cat "$tmp"
    } >"$lock"
    echo "relocked: $(grep -c '^[A-Za-z0-9]' "$lock") packages in $lock"
fi

[[ -f $lock ]] || { echo "no lock at $lock: run with --relock" >&2; exit 1; }
mkdir -p "$wheels"

norm() { tr '[:upper:]' '[:lower:]' <<<"$1" | tr -- '-.' '__'; }

# name==version of each locked package, and the wheel hashes the lock allows for it.
mapfile -t pins < <(grep -oE '^[A-Za-z0-9][A-Za-z0-9._-]*==[^ ;\\]+' "$lock")
declare -A want_version
for pin in "${pins[@]}"; do
    want_version[$(norm "${pin%%==*}")]=${pin#*==}
done
hashes_of() {  # the --hash lines of one package's block in the lock
    awk -v want="$1" '
        /^[A-Za-z0-9]/ { name = tolower($1); sub(/==.*/, "", name); gsub(/[-.]/, "_", name); on = (name == want) }
        on && /--hash=sha256:/ { sub(/.*--hash=sha256:/, ""); sub(/[ \\]+$/, ""); print }' "$lock"
}

# A wheel in the folder that is not the locked version, or whose hash is not the lock's, goes.
declare -A have
shopt -s nullglob
for whl in "$wheels"/*.whl; do
    base=${whl##*/}
    name=$(norm "${base%%-*}")
    version=${base#*-}; version=${version%%-*}
    if [[ ${want_version[$name]:-} != "$version" ]]; then
        echo "removing $base: not in the lock"
        rm -f "$whl"; continue
    fi
    # (no grep -q on a pipe: with pipefail, awk's SIGPIPE after an early match would read as a miss)
    if ! grep -qx "$(sha256sum "$whl" | cut -d' ' -f1)" <<<"$(hashes_of "$name")"; then
        echo "removing $base: its sha256 is not among the lock's"
        rm -f "$whl"; continue
    fi
    have[$name]=1
done

missing=()
for pin in "${pins[@]}"; do
    [[ -n ${have[$(norm "${pin%%==*}")]:-} ]] || missing+=("$pin")
done
if ((${#missing[@]})); then
    echo "downloading ${#missing[@]} of ${#pins[@]} wheels"
    reqs=$(mktemp)
    # The missing packages' blocks of the lock, hashes and all: pip then checks every download.
    for pin in "${missing[@]}"; do
        awk -v want="$(norm "${pin%%==*}")" '
            /^[A-Za-z0-9]/ { name = tolower($1); sub(/==.*/, "", name); gsub(/[-.]/, "_", name); on = (name == want) }
            /^#/ { next }
            on' "$lock"
    done >"$reqs"
    platform_args=()
    for p in "${platforms[@]}"; do platform_args+=(--platform "$p"); done
    # PIP_CONSTRAINT empty: a machine-wide constraints file must not bear on another machine's set.
    PIP_CONSTRAINT='' python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
        --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
        "${platform_args[@]}" --platform any -d "$wheels" -r "$reqs"
    rm -f "$reqs"
else
    echo "all ${#pins[@]} locked wheels present; nothing to download"
fi

# Exactly one wheel for each locked package, nothing else.
count=0
for pin in "${pins[@]}"; do
    name=${pin%%==*}
    mapfile -t found < <(find "$wheels" -maxdepth 1 -iname "$(norm "$name")-${pin#*==}-*.whl")
    ((${#found[@]} == 1)) || { echo "expected one wheel for $pin, found ${#found[@]}" >&2; exit 1; }
    count=$((count + 1))
done
extra=$(($(find "$wheels" -maxdepth 1 -name '*.whl' | wc -l) - count))
((extra == 0)) || { echo "$extra wheels in $wheels are not in the lock" >&2; exit 1; }

# One uncompressed tar (wheels are compressed already), split into parts of 58 MiB.
rm -f "$out"/part-* "$out"/vbundle.tar "$out"/vbundle.tar.sha256
(cd "$out" && tar --sort=name --owner=0 --group=0 --mtime=@0 -cf vbundle.tar wheels)
(cd "$out" && sha256sum vbundle.tar >vbundle.tar.sha256)
split -b "$part_size" -d -a 2 "$out/vbundle.tar" "$out/part-"
rm -f "$out/vbundle.tar"

parts=("$out"/part-*)
echo "bundle: $count wheels, $(du -cb "${parts[@]}" | tail -1 | cut -f1) bytes in ${#parts[@]} parts:"
for f in "${parts[@]}"; do printf '  %s %d\n' "${f#"$root"/}" "$(stat -c %s "$f")"; done
