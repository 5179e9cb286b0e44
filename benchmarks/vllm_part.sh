#!/usr/bin/env bash
# Runs ON the GPU machine, one command a part: copies the carried .vbundle/part-NN (and, with part 00,
# .vbundle/vbundle.tar.sha256) to /tmp/vbundle/, which stays while the machine is kept (30 s idle).
#   run(command="bash benchmarks/vllm_part.sh 00", carry=[".vbundle/part-00", ".vbundle/vbundle.tar.sha256"])
#   run(command="bash benchmarks/vllm_part.sh 01", carry=[".vbundle/part-01"])  ... up to the last part
# then benchmarks/vllm_install.sh. Built by benchmarks/vllm_bundle.sh.
set -euo pipefail
[[ $# -eq 1 && $1 =~ ^[0-9]+$ ]] || { echo "usage: $0 NN (the part's number, as in .vbundle/part-NN)" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
part=$(printf 'part-%02d' "$((10#$1))")
dest=${VBUNDLE_DIR:-/tmp/vbundle}
mkdir -p "$dest"
[[ -f $root/.vbundle/$part ]] || { echo "no $part carried: name .vbundle/$part in carry" >&2; exit 1; }
cp "$root/.vbundle/$part" "$dest/$part"
if [[ -f $root/.vbundle/vbundle.tar.sha256 ]]; then cp "$root/.vbundle/vbundle.tar.sha256" "$dest/"; fi
echo "$dest now holds:"
ls -l "$dest"
