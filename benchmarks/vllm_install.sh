#!/usr/bin/env bash
# Runs ON the GPU machine (no network), after every part reached /tmp/vbundle/ (benchmarks/vllm_part.sh):
# joins the parts, checks the tar's sha256, untars the wheels, installs them with --no-deps into
# /tmp/vsite, and checks the versions and vLLM's Pixtral import. Then use the bundle with
#   PYTHONPATH=/tmp/vsite python3 ...
# (the target folder comes first on sys.path, so its transformers 5.12.0 and tokenizers 0.22.2 shadow
# the image's 5.17.0 and 0.23.2). Rerunning it installs again from the wheels already untarred.
# Built by benchmarks/vllm_bundle.sh from benchmarks/vllm-h200.lock.
set -euo pipefail
dir=${VBUNDLE_DIR:-/tmp/vbundle}
site=${VSITE:-/tmp/vsite}

shopt -s nullglob
parts=("$dir"/part-*)
wheels=("$dir"/wheels/*.whl)
if ((${#parts[@]})); then
    echo "joining ${#parts[@]} parts: ${parts[*]##*/}"
    cat "${parts[@]}" >"$dir/vbundle.tar"
    if [[ -f $dir/vbundle.tar.sha256 ]]; then
        (cd "$dir" && sha256sum -c vbundle.tar.sha256) || {
            echo "the joined tar does not match vbundle.tar.sha256: a part is missing or cut short" >&2
            exit 1
        }
    else
        echo "warning: no vbundle.tar.sha256 (carried with part 00): the join is not checked" >&2
    fi
    rm -rf "$dir/wheels"
    tar -xf "$dir/vbundle.tar" -C "$dir"
    rm -f "$dir/vbundle.tar" "${parts[@]}"
    wheels=("$dir"/wheels/*.whl)
elif ((${#wheels[@]} == 0)); then
    echo "no parts and no wheels in $dir: carry them first (benchmarks/vllm_part.sh)" >&2
    exit 1
fi

echo "installing ${#wheels[@]} wheels into $site"
rm -rf "$site"
python3 -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
    --target "$site" "${wheels[@]}"

PYTHONPATH=$site python3 - "$site" <<'PY'
import importlib
import importlib.metadata as md
import sys

site = sys.argv[1]
want = {"vllm": "0.26.0", "transformers": "5.12.0", "tokenizers": "0.22.2"}
for dist, mod in [("vllm", "vllm"), ("transformers", "transformers"), ("tokenizers", "tokenizers"),
                  ("huggingface-hub", "huggingface_hub"), ("mistral-common", "mistral_common"),
                  ("av", "av"), ("pydantic", "pydantic"), ("torch", "torch")]:
    m = importlib.import_module(mod)
    v = md.version(dist)
    where = "bundle" if m.__file__.startswith(site) else "image"
    print(f"{dist:16} {v:14} {where:6} {m.__file__}")
    if dist in want and (v != want[dist] or where != "bundle"):
        sys.exit(f"{dist}: expected {want[dist]} from {site}, got {v} from {m.__file__}")
from transformers.models.pixtral.modeling_pixtral import PixtralRotaryEmbedding  # noqa: F401
from vllm import LLM, SamplingParams  # noqa: F401
import vllm.model_executor.models.pixtral  # noqa: F401
print("ok: vllm imports, with transformers' PixtralRotaryEmbedding")
PY
