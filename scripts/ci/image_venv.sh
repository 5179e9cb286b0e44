#!/usr/bin/env bash
# A virtual environment holding the Cosmos-Transfer1 image's pins (scripts/ci/cosmos-image-pins.txt)
# and nothing of cosmos-workflow: the stand-in for the image in the install simulation and the
# version-matrix tests. Built once (under a lock); rebuilt when the pins or the interpreter change.
# Usage: image_venv.sh DIR    (prints DIR when ready)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:?usage: image_venv.sh DIR}
python=${PYTHON:-python3}
pins=scripts/ci/cosmos-image-pins.txt
# pytest-xdist's workers may ask at once (the install tests' two groups): one builds, the others wait
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
want="$(cat "$pins" <("$python" -VV) | sha256sum | cut -d' ' -f1)"
if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.pins-stamp" 2>/dev/null)" = "$want" ]; then
  echo "$dir"
  exit 0
fi
rm -rf "$dir"
"$python" -m venv "$dir"
"$dir/bin/python" -m pip install -q -r "$pins" >&2
echo "$want" >"$dir/.pins-stamp"
echo "$dir"
